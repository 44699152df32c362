//! Tests' view of what herd logs: what a subscriber writes while a closure runs.

use std::sync::{Arc, Mutex};

/// Collects what a subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// What was written so far.
    fn text(&self) -> String {
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
    logged_with(tracing_subscriber::fmt::format::DefaultFields::new(), log)
}

/// The lines `log` writes, its fields formatted by `fields`, without times.
pub fn logged_with<N, T>(fields: N, log: impl FnOnce() -> T) -> (T, String)
where
    N: for<'w> tracing_subscriber::fmt::FormatFields<'w> + Send + Sync + 'static,
{
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .fmt_fields(fields)
        .finish();
    let value = tracing::subscriber::with_default(subscriber, log);
    (value, captured.text())
}
