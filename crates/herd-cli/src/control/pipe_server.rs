//! The control server on Windows: a secure named pipe ([`SecurePipe`]) speaking the same
//! protocol as the Unix socket, answered by a handler the caller gives.
//!
//! Only herd's own user, Administrators, LocalSystem and the accounts `--control-allow-*`
//! names can open the pipe (its security descriptor is the access check). Each client is
//! known by its process id, from the pipe itself (`GetNamedPipeClientProcessId`), never from
//! what it says; its user SID is not read (herd-sys does not impersonate clients). Sockets in
//! an answer are duplicated for that pid (`WSADuplicateSocketW`) and sent as hex blocks
//! ([`line_with_blocks`]). For an `attach` request the client's process is opened as the
//! request comes, while the pid is its own, and the request carries that handle (or why it
//! could not be opened) to the supervisor ([`Connection`]).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::os::windows::io::AsSocket;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use herd_sys::windows::pipe::{client_process_id, Instances, SecurePipe};
use herd_sys::windows::process::Process;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::windows::named_pipe::NamedPipeServer;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;

use super::held::{log_closed, Replies, Sink, Unread};
use super::hung_up::carry_out;
use super::lines::{next_turn, Turn, IDLE_TIMEOUT};
use super::logs;
use super::protocol::{Command, ErrorCode, Request, Response};
use super::reply::{line_with_blocks, Reply};
use super::request::{forward, Connection, ControlRequest, Peer};
use super::retry::{log_failure, log_recovery, Pipe, Retry};
use super::room::{place, Place};
use super::waiting::{Wait, Waiting};

/// How many connections may be open at once (as on Unix).
pub const MAX_CONNECTIONS: usize = 1000;

/// Who sent a request, as the system reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PipePeer {
    /// The client's process id (`GetNamedPipeClientProcessId`).
    pub pid: u32,
}

/// A control pipe whose first instance exists: the name is herd's.
#[derive(Debug)]
pub struct PipeServer {
    pipe: SecurePipe,
    waiting: NamedPipeServer,
}

impl PipeServer {
    /// Creates `pipe`'s first instance; fails when the name exists already (another herd, or
    /// a squatter). Needs a tokio runtime with I/O.
    pub fn bind(pipe: SecurePipe) -> io::Result<PipeServer> {
        let waiting = pipe.first_instance()?;
        Ok(PipeServer { pipe, waiting })
    }

    /// Serves clients for ever, each in a task of its own, answering each request with
    /// `handler`. While no next instance can be created, creating it is retried ([`Retry`]).
    pub async fn serve<H, F>(self, handler: H)
    where
        H: Fn(Request, PipePeer) -> F + Clone + Send + 'static,
        F: Future<Output = Reply> + Send,
    {
        self.serve_written(move |request, peer, _process, _written| handler(request, peer))
            .await
    }

    /// Serves clients for ever as the supervisor's control endpoint: each request goes to
    /// `requests` (as the Unix socket's server sends them), and its `written` resolves once
    /// the answer went out.
    pub async fn forward(self, requests: mpsc::Sender<ControlRequest>) {
        self.serve_written(move |request: Request, peer: PipePeer, process, written| {
            let requests = requests.clone();
            async move {
                let peer = Peer {
                    pid: Some(peer.pid),
                    uid: None,
                };
                forward(request.command, peer, written, process, &requests).await
            }
        })
        .await
    }

    /// [`serve`](PipeServer::serve), with each request's `written` channel given to the
    /// handler, and for an `attach`, the client's process.
    async fn serve_written<H, F>(self, handler: H)
    where
        H: Fn(Request, PipePeer, Option<Connection>, oneshot::Receiver<()>) -> F
            + Clone
            + Send
            + 'static,
        F: Future<Output = Reply> + Send,
    {
        let PipeServer { pipe, waiting } = self;
        serve_instances(&pipe, waiting, SecurePipe::next_instance, handler).await
    }
}

/// Serves the clients of `pipe` for ever, `waiting` being its instance that waits for the next
/// one and `next_instance` making another. While no next instance can be made, the client on
/// the one there is gets its task as usual, making the next one is retried ([`Retry`]), and
/// that instance is renewed once its client is gone ([`Instances::renew`]): the pipe's name
/// stays held, and a client that stays connected (`logs -f`) blocks no other.
pub(super) async fn serve_instances<H, F>(
    pipe: &SecurePipe,
    mut waiting: NamedPipeServer,
    next_instance: impl FnMut(&SecurePipe) -> io::Result<NamedPipeServer>,
    handler: H,
) where
    H: Fn(Request, PipePeer, Option<Connection>, oneshot::Receiver<()>) -> F
        + Clone
        + Send
        + 'static,
    F: Future<Output = Reply> + Send,
{
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (replies, waiting_ones) = (Replies::default(), Waiting::default());
    let mut retry = Retry::default();
    let mut instances = Instances::new(pipe, next_instance);
    let name = pipe.name();
    loop {
        let connected = waiting.connect().await;
        // The next instance exists before this one is served, so clients always find one.
        let next = match instances.next_instance() {
            Ok(next) => next,
            Err(e) => {
                let failed = retry.failed();
                log_failure(Pipe::Control, name, &failed, &e);
                let (handler, replies) = (handler.clone(), replies.clone());
                // Waiting for its first request from now on, before its task runs.
                let first = connected.is_ok().then(|| waiting_ones.start());
                let waiting_ones = waiting_ones.clone();
                // Lent to its client, if one connected; renewed once it is gone.
                let lent = tokio::spawn(async move {
                    if let Some(first) = first {
                        let waits = (first, &waiting_ones);
                        converse(&mut waiting, handler, &replies, waits).await;
                    }
                    waiting
                });
                waiting = recover(lent, &mut instances, &mut retry, failed.pause).await;
                continue;
            }
        };
        log_recovery(Pipe::Control, name, retry.succeeded());
        let client = std::mem::replace(&mut waiting, next);
        if connected.is_err() {
            continue;
        }
        let free = Arc::clone(&slots).try_acquire_owned().ok();
        // One let in at once waits for its first request from now on, before its task runs: a
        // newcomer right behind it (a burst of them) finds it there to give way.
        let first = free.is_some().then(|| waiting_ones.start());
        let (handler, replies) = (handler.clone(), replies.clone());
        let (slots, waiting_ones) = (Arc::clone(&slots), waiting_ones.clone());
        tokio::spawn(async move {
            // The pipe's security descriptor let the client in: its peer is allowed.
            let permit = match place(Ok::<(), Infallible>(()), || free) {
                Place::Free((), permit) => Some(permit),
                Place::MakeRoom(()) => waiting_ones.place(&slots).await,
                Place::Denied(never) => match never {},
            };
            let Some(_permit) = permit else {
                let busy = Response::error(
                    ErrorCode::Busy,
                    format!("too many control connections (at most {MAX_CONNECTIONS})"),
                );
                return say(&mut { client }, &busy.to_line()).await;
            };
            // One that waited for room waits for its first request once it has its place.
            let first = first.unwrap_or_else(|| waiting_ones.start());
            let mut client = client;
            let waits = (first, &waiting_ones);
            if converse(&mut client, handler, &replies, waits).await == Ended::Abandoned {
                // A write of the reply may still be pending: it would hold the instance (and
                // its buffer) until the client reads or closes. Disconnecting fails it.
                let _ = client.disconnect();
            }
        });
    }
}

/// The instance to wait on next while the only one serves a client in the task `lent`: a new
/// one as soon as one can be made (retried after `pause`, then as [`Retry`] says), or one made
/// in place of `lent`'s once its client is gone ([`Instances::renew`]).
async fn recover(
    lent: JoinHandle<NamedPipeServer>,
    instances: &mut Instances<'_, impl FnMut(&SecurePipe) -> io::Result<NamedPipeServer>>,
    retry: &mut Retry,
    mut pause: Duration,
) -> NamedPipeServer {
    let name = instances.name();
    let mut lent = Some(lent);
    loop {
        let returned = async {
            match lent.as_mut() {
                Some(task) => task.await,
                None => std::future::pending().await,
            }
        };
        let renewed = tokio::select! {
            returned = returned => {
                lent = None;
                // If its task panicked with the instance, only a new one will do.
                match returned {
                    Ok(instance) => instances.renew(instance),
                    Err(_) => instances.next_instance(),
                }
            },
            () = tokio::time::sleep(pause) => instances.next_instance(),
        };
        match renewed {
            Ok(next) => {
                log_recovery(Pipe::Control, name, retry.succeeded());
                return next;
            }
            Err(e) => {
                let failed = retry.failed();
                log_failure(Pipe::Control, name, &failed, &e);
                pause = failed.pause;
            }
        }
    }
}

async fn say(client: &mut NamedPipeServer, line: &[u8]) {
    let _ = tokio::time::timeout(IDLE_TIMEOUT, client.write_all(line)).await;
}

/// Answers the client's requests one line at a time (within the budget of `replies`), until it
/// closes, idles too long, sends a request too large, leaves a reply unread while others need
/// the room, or has waited longest for a request (in `waiting`) when a newcomer needs its place;
/// `first` is its wait for its first request, begun when it was let in.
async fn converse<H, F>(
    client: &mut NamedPipeServer,
    handler: H,
    replies: &Replies,
    (first, waiting): (Wait, &Waiting),
) -> Ended
where
    H: Fn(Request, PipePeer, Option<Connection>, oneshot::Receiver<()>) -> F,
    F: Future<Output = Reply>,
{
    let peer = match client_process_id(&*client) {
        Ok(pid) => PipePeer { pid },
        Err(_) => return Ended::Done,
    };
    let (read, mut write) = tokio::io::split(client);
    let mut reader = BufReader::with_capacity(1024, read);
    // Whether the client has left: what it sent before still counts (as on the Unix socket,
    // see `hung_up`), but no answer is written.
    let mut left = false;
    let mut first = Some(first);
    loop {
        let (written, written_rx) = oneshot::channel();
        let (mut refusable, mut turn) = (false, None);
        let wait = first.take().unwrap_or_else(|| waiting.start());
        let next = (wait.or_give_way(next_turn(&mut reader)).await).unwrap_or(Turn::Close(None));
        let line = match next {
            Turn::Close(last) => {
                if let (Some(last), false) = (last, left) {
                    let _ =
                        tokio::time::timeout(IDLE_TIMEOUT, write.write_all(&last.to_line())).await;
                }
                return Ended::Done;
            }
            Turn::Answer(_) if left => continue,
            Turn::Request(request) if !carry_out(&request.command, left) => continue,
            Turn::Answer(response) => response.to_line(),
            Turn::Request(request) => {
                // A pipe cannot be half closed: its end means its client is gone.
                match logs::serve(&request.command, &mut reader, &mut write, |_| true).await {
                    Some(true) => continue,
                    Some(false) => return Ended::Done,
                    None => {}
                }
                // Opened for an `attach` only, while the client is connected, so the pid is
                // still its own; why not, if Windows refuses (the attach then says it).
                let attaching = matches!(request.command, Command::Sockets { attach: true, .. });
                let held = attaching.then(|| Process::open(peer.pid));
                // Only a status may be refused for want of room: other commands took effect.
                refusable = matches!(request.command, Command::Status);
                if refusable {
                    turn = replies.turn_to_build().await;
                }
                let reply = handler(request, peer, held, written_rx).await;
                if left {
                    let _ = written.send(());
                    continue;
                }
                reply_line(reply, peer.pid)
            }
        };
        let mut chunked = Chunked(&mut write);
        let reply = replies.write(&mut chunked, line, refusable, turn);
        let sent = tokio::time::timeout(IDLE_TIMEOUT, reply).await;
        let _ = written.send(());
        match sent {
            Ok(Ok(())) => {}
            // The client is gone: read on to the end of what it sent.
            Ok(Err(e)) if e.kind() == io::ErrorKind::BrokenPipe => left = true,
            // Given way for others' replies, or left unread for IDLE_TIMEOUT.
            failed => {
                let peer = Peer {
                    pid: Some(peer.pid),
                    uid: None,
                };
                log_closed(peer, failed.ok().and_then(Result::err).as_ref());
                return Ended::Abandoned;
            }
        }
    }
}

/// How a conversation ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// The client left, idled out, or was answered to the end.
    Done,
    /// Its reply was abandoned unread, perhaps in the middle of a write.
    Abandoned,
}

/// How many bytes of a reply go into the pipe at once.
const CHUNK: usize = 64 * 1024;

/// A pipe's writer that takes at most [`CHUNK`] bytes per write. mio's named pipe copies a whole
/// write into a buffer of its own and calls it written; a chunk is taken only once the one
/// before has gone into the pipe (its buffer, or its client), so the reply budget sees what a
/// client leaves unread. The pipe cannot say how much that is ([`Sink::socket`] is `None`):
/// a reply that made no progress for the budget's while is taken for stalled.
struct Chunked<'a, W>(&'a mut W);

impl<W: AsyncWrite + Unpin> AsyncWrite for Chunked<'_, W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let chunk = &buf[..buf.len().min(CHUNK)];
        Pin::new(&mut *self.0).poll_write(cx, chunk)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

impl<W: AsyncWrite + Unpin> Sink for Chunked<'_, W> {
    fn socket(&self) -> Option<Arc<dyn Unread>> {
        None
    }
}

/// The reply's line, its sockets duplicated for `pid`; the reply's own handles are closed.
fn reply_line(reply: Reply, pid: u32) -> Vec<u8> {
    if reply.fds.is_empty() {
        return reply.response.to_line();
    }
    let blocks: io::Result<Vec<_>> = reply
        .fds
        .iter()
        .map(|socket| herd_sys::wsa::duplicate_for(socket.as_socket(), pid))
        .collect();
    match blocks {
        Ok(blocks) => line_with_blocks(&reply.response, &blocks),
        Err(e) => Response::error(
            ErrorCode::Internal,
            format!("cannot duplicate the sockets for process {pid}: {e}"),
        )
        .to_line(),
    }
}
