//! Tests' view of what herd logs: what a subscriber writes while a closure runs.

use std::sync::{Arc, Mutex};

/// Collects what a subscriber writes.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// What was written so far.
    pub fn text(&self) -> String {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The lines `log` writes, every field shown (`event=orphan_exited` included), without times.
#[cfg_attr(not(unix), allow(dead_code))] // its callers are Unix's
pub fn logged<T>(log: impl FnOnce() -> T) -> (T, String) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .finish();
    let value = tracing::subscriber::with_default(subscriber, log);
    (value, captured.text())
}
