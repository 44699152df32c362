//! Reading request heads: the connections of an HTTP endpoint still waiting for theirs, oldest
//! first (when every slot is taken, the oldest of them is told to close for a new client).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncReadExt;
use tokio::sync::Notify;

/// The connections still waiting for their request head, oldest first.
#[derive(Default)]
pub struct Reading {
    waiting: Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    next_id: u64,
    oldest_first: VecDeque<(u64, Arc<Notify>)>,
}

impl Reading {
    /// Registers a new connection: its id and what tells it to close.
    pub fn add(&self) -> (u64, Arc<Notify>) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let id = waiting.next_id;
        waiting.next_id += 1;
        let closing = Arc::new(Notify::new());
        waiting.oldest_first.push_back((id, Arc::clone(&closing)));
        (id, closing)
    }

    /// Forgets a connection that has its head (or gave up).
    pub fn remove(&self, id: u64) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        waiting.oldest_first.retain(|(other, _)| *other != id);
    }

    /// Tells the oldest connection still without its head to close.
    pub fn close_oldest(&self) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, closing)) = waiting.oldest_first.pop_front() {
            closing.notify_one();
        }
    }
}

/// The longest request head read.
const MAX_HEAD: usize = 8192;

/// Reads up to the end of the request head; `None` if the client closes first or sends more
/// than [`MAX_HEAD`] bytes.
pub async fn read_head(stream: &mut tokio::net::TcpStream) -> std::io::Result<Option<String>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() > MAX_HEAD {
            return Ok(None);
        }
        let scanned = head.len();
        head.extend_from_slice(&buf[..n]);
        if head_ends(&head, scanned) {
            return Ok(Some(String::from_utf8_lossy(&head).into_owned()));
        }
    }
}

/// Whether `head` holds the blank line that ends a request head (`\r\n\r\n`, or a bare
/// `\n\n`), looking only at what came after its first `scanned` bytes (already looked at).
fn head_ends(head: &[u8], scanned: usize) -> bool {
    let new = &head[scanned.saturating_sub(2)..];
    new.windows(2).any(|w| w == b"\n\n") || new.windows(3).any(|w| w == b"\n\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_ends_at_its_blank_line_however_it_arrives() {
        let ends_bytewise =
            |request: &[u8]| (1..=request.len()).find(|&len| head_ends(&request[..len], len - 1));
        let crlf = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(ends_bytewise(crlf), Some(crlf.len()));
        let lf = b"GET /healthz HTTP/1.0\nHost: x\n\n";
        assert_eq!(ends_bytewise(lf), Some(lf.len()));
        assert_eq!(ends_bytewise(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
        assert!(head_ends(crlf, 0));
        assert!(head_ends(lf, lf.len() - 2));
        assert!(!head_ends(crlf, crlf.len()));
    }

    #[test]
    fn the_oldest_connection_without_its_head_is_closed_first() {
        let reading = Reading::default();
        let (first, first_closing) = reading.add();
        let (_, second_closing) = reading.add();
        let (_, third_closing) = reading.add();
        reading.remove(first);
        reading.close_oldest();
        // The second was told (a permit is stored for it), the third was not.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(second_closing.notified());
        let told = |n: &Notify| {
            let notified = n.notified();
            tokio::pin!(notified);
            notified.as_mut().enable()
        };
        assert!(!told(&third_closing));
        assert!(!told(&first_closing));
    }
}
