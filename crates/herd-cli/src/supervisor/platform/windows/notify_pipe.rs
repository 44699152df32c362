//! The notify pipe: on Windows, workers send their `sd_notify` messages (`READY=1`,
//! `STATUS=`, `WATCHDOG=1`) to a named pipe herd names in `NOTIFY_SOCKET`, one connection per
//! message, as a datagram would be one send (`herd::notify` does it; so can any program: open
//! the pipe, write, close).
//!
//! Only herd's user, Administrators and LocalSystem can open it ([`SecurePipe`]). Each message
//! is attributed to the client's process id as the system reports it
//! (`GetNamedPipeClientProcessId`). A message ends when the client closes the pipe, when it is
//! longer than [`MAX_MESSAGE`] bytes (the rest is not read: the message is cut, and
//! [`NotifyPipe::is_cut`] says so), or [`MESSAGE_TIMEOUT`] after the client connected (what
//! came is the message), so a client that says nothing cannot hold on to an instance. Many
//! clients are read at once: messages of different connections come in the order their
//! reading ends.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use herd_sys::windows::pipe::{client_process_id, Instances, SecurePipe};
use tokio::io::AsyncReadExt;
use tokio::net::windows::named_pipe::NamedPipeServer;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::control::retry::{log_failure, log_recovery, Pipe, Retry};

/// The longest message (as on Unix, where longer datagrams are dropped).
pub const MAX_MESSAGE: usize = 4096;
/// How long a client has to send its message, from when it is connected.
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(2);
/// How many clients are read at once; more wait for a free instance (`herd::notify` retries
/// a busy pipe for a second).
pub const MAX_CLIENTS: usize = 64;
/// What connecting reports of a client that already closed its end.
const ERROR_NO_DATA: i32 = 232;

/// herd's notify pipe, served in the background; its messages come out of [`recv`].
///
/// [`recv`]: NotifyPipe::recv
#[derive(Debug)]
pub struct NotifyPipe {
    name: String,
    messages: tokio::sync::Mutex<mpsc::Receiver<(u32, Vec<u8>)>>,
    server: JoinHandle<()>,
}

impl NotifyPipe {
    /// Creates the pipe `name` (see `control::pipe_name::notify_pipe`) and serves it; fails
    /// when the name exists already. Needs a tokio runtime with I/O.
    pub fn bind(name: &str) -> io::Result<NotifyPipe> {
        let pipe = SecurePipe::new(name, &[])?;
        let first = pipe.first_instance()?;
        let (sender, messages) = mpsc::channel(MAX_CLIENTS);
        let server = tokio::spawn(serve(pipe, first, sender));
        Ok(NotifyPipe {
            name: name.to_string(),
            messages: tokio::sync::Mutex::new(messages),
            server,
        })
    }

    /// Whether `message` was longer than [`MAX_MESSAGE`] and cut (it then has one byte
    /// more): drop it, as Unix drops a longer datagram.
    pub fn is_cut(message: &[u8]) -> bool {
        message.len() > MAX_MESSAGE
    }

    /// The pipe's name: what `NOTIFY_SOCKET` says to workers.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next message, with its sender's process id; never empty, and at most
    /// `MAX_MESSAGE + 1` bytes (see [`NotifyPipe::is_cut`]). Cancel-safe: a message is never
    /// lost to a `select!` that picked another branch.
    pub async fn recv(&self) -> (u32, Vec<u8>) {
        match self.messages.lock().await.recv().await {
            Some(message) => message,
            // The server never ends while `self` lives; should it, nothing more comes.
            None => std::future::pending().await,
        }
    }
}

impl Drop for NotifyPipe {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Accepts clients for ever, each read by a task of its own (at most [`MAX_CLIENTS`] at once).
async fn serve(pipe: SecurePipe, waiting: NamedPipeServer, sender: mpsc::Sender<(u32, Vec<u8>)>) {
    serve_instances(&pipe, waiting, SecurePipe::next_instance, sender).await
}

/// [`serve`], each next instance made by `next_instance`. While none can be made, the client
/// on the instance there is is read here, and that instance is renewed for the next one
/// ([`renewed`]).
async fn serve_instances(
    pipe: &SecurePipe,
    mut waiting: NamedPipeServer,
    next_instance: impl FnMut(&SecurePipe) -> io::Result<NamedPipeServer>,
    sender: mpsc::Sender<(u32, Vec<u8>)>,
) {
    let mut instances = Instances::new(pipe, next_instance);
    let mut retry = Retry::default();
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    let mut readers = tokio::task::JoinSet::new();
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        // A client that wrote and closed before this connect makes it fail (ERROR_NO_DATA),
        // yet its message can still be read: every instance is read either way. Another
        // failure, were it to repeat, must not spin.
        if let Err(e) = waiting.connect().await {
            if e.raw_os_error() != Some(ERROR_NO_DATA) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        while readers.try_join_next().is_some() {}
        match instances.next_instance() {
            Ok(next) => {
                log_recovery(Pipe::Notify, instances.name(), retry.succeeded());
                let client = std::mem::replace(&mut waiting, next);
                let sender = sender.clone();
                readers.spawn(async move {
                    deliver(&mut { client }, &sender).await;
                    drop(slot);
                });
            }
            // No next instance (out of resources): read this client here, then renew its
            // instance for the next one (a reused one would give it what this one left).
            Err(e) => {
                let failed = retry.failed();
                log_failure(Pipe::Notify, instances.name(), &failed, &e);
                deliver(&mut waiting, &sender).await;
                waiting = renewed(&mut instances, waiting, &mut retry).await;
            }
        }
    }
}

/// An instance in place of `used`, whose client is gone ([`Instances::renew`]). While none can
/// be made, it is tried again after a pause that doubles from 10 ms up to 1 s (`retry`, which
/// counts the failures in a row and says when to log them): the loop never spins, and the pipe
/// is served again at most a second after an instance can be made (never, if a process took
/// the name while it had none: herd does not serve behind it).
async fn renewed(
    instances: &mut Instances<'_, impl FnMut(&SecurePipe) -> io::Result<NamedPipeServer>>,
    used: NamedPipeServer,
    retry: &mut Retry,
) -> NamedPipeServer {
    let mut made = instances.renew(used);
    loop {
        match made {
            Ok(next) => {
                log_recovery(Pipe::Notify, instances.name(), retry.succeeded());
                return next;
            }
            Err(e) => {
                let failed = retry.failed();
                log_failure(Pipe::Notify, instances.name(), &failed, &e);
                tokio::time::sleep(failed.pause).await;
            }
        }
        made = instances.next_instance();
    }
}

/// Reads the client's message and passes it on with the client's pid.
async fn deliver(client: &mut NamedPipeServer, sender: &mpsc::Sender<(u32, Vec<u8>)>) {
    let Ok(pid) = client_process_id(&*client) else {
        return;
    };
    let message = read_message(client).await;
    if !message.is_empty() {
        let _ = sender.send((pid, message)).await;
    }
}

/// What the client sends until it closes, [`MAX_MESSAGE`] bytes and one more (cut), or
/// [`MESSAGE_TIMEOUT`].
async fn read_message(client: &mut NamedPipeServer) -> Vec<u8> {
    let deadline = Instant::now() + MESSAGE_TIMEOUT;
    let mut message = vec![0u8; MAX_MESSAGE + 1];
    let mut len = 0;
    while len < message.len() {
        // Each read is cancel-safe: at the deadline no byte is lost, the rest is not read.
        match tokio::time::timeout_at(deadline, client.read(&mut message[len..])).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => len += n,
        }
    }
    message.truncate(len);
    message
}

#[cfg(test)]
mod tests;
