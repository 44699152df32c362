//! HTTP clients: one request, and a load of clients that connect back to back.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};

use super::*;

/// Sends `GET path` over a new TCP connection to `addr` and returns the response body.
pub fn get(addr: &str, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    request(&mut stream, path)
}

/// Sends `GET path` on `stream` and returns the response body.
pub fn request(stream: &mut (impl Read + Write), path: &str) -> std::io::Result<String> {
    // One write: a server may answer (and close) as soon as it has read the request head.
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    match response.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.") => Ok(body.to_string()),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not an HTTP response: {response:?}"),
        )),
    }
}

/// Clients that open a new connection per request, back to back, until [`Load::finish`].
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    served: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    failures: std::sync::Arc<Mutex<Vec<String>>>,
    clients: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    /// Starts `clients` clients sending `GET /` to `addr`; an answer that fails `ok` counts
    /// as a failure.
    pub fn start(addr: &str, clients: usize, ok: fn(&str) -> bool) -> Load {
        let addr = addr.to_string();
        Load::start_with(clients, move || get(&addr, "/"), ok)
    }

    /// Starts `clients` clients calling `request` back to back (each call a new connection);
    /// an error, or an answer that fails `ok`, counts as a failure.
    pub fn start_with(
        clients: usize,
        request: impl Fn() -> std::io::Result<String> + Send + Sync + 'static,
        ok: fn(&str) -> bool,
    ) -> Load {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let request = Arc::new(request);
        let clients = (0..clients)
            .map(|_| {
                let (stop, served, failures, request) = (
                    stop.clone(),
                    served.clone(),
                    failures.clone(),
                    request.clone(),
                );
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match request() {
                            Ok(body) if ok(&body) => {
                                served.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(body) => failures
                                .lock()
                                .unwrap()
                                .push(format!("bad answer {body:?}")),
                            Err(e) => failures.lock().unwrap().push(e.to_string()),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            served,
            failures,
            clients,
        }
    }

    /// Stops the clients; returns how many requests were served and every failure.
    pub fn finish(self) -> (usize, Vec<String>) {
        use std::sync::atomic::Ordering;
        self.stop.store(true, Ordering::Relaxed);
        for c in self.clients {
            c.join().unwrap();
        }
        let failures = std::mem::take(&mut *self.failures.lock().unwrap());
        (self.served.load(Ordering::Relaxed), failures)
    }

    /// Stops the clients and asserts that no request failed and more than `at_least` were
    /// served.
    pub fn finish_without_failures(self, at_least: usize) {
        let (served, failures) = self.finish();
        assert!(
            failures.is_empty(),
            "{} of {served} requests failed: {:?}",
            failures.len(),
            &failures[..]
        );
        assert!(served > at_least, "only {served} requests were served");
    }
}
