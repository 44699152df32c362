//! The notify pipe under Wine, with clients in this process (std's file API, as the worker
//! library writes) and in a child: this test binary again, running only [`play`], which
//! notifies through `herd::notify`.

use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

use herd_sys::windows::pipe::{Instances, SecurePipe};

use super::{NotifyPipe, MAX_MESSAGE};

const ROLE: &str = "HERD_NOTIFY_TEST_ROLE";
const PATIENCE: Duration = Duration::from_secs(60);

fn unique_pipe(test: &str) -> String {
    format!(r"\\.\pipe\herd-test\{}\{test}.notify", std::process::id())
}

/// Runs `test` on a runtime with I/O and timers.
fn run<T>(test: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(test)
}

/// The next message, or a panic after [`PATIENCE`].
async fn next(pipe: &mut NotifyPipe) -> (u32, String) {
    let (pid, message) = tokio::time::timeout(PATIENCE, pipe.recv())
        .await
        .expect("a message in time");
    (pid, String::from_utf8_lossy(&message).into_owned())
}

/// One connection to `pipe`, as the worker library opens it (a busy pipe, one whose next
/// instance is not there yet, is tried again), also tried again while the pipe has no
/// instance at all (its only one renewed: the old one, a read still pending on it, is closed
/// once the runtime sees that read cancelled, and only then is the new one made). Blocks: call
/// it off the runtime's thread.
fn open(pipe: &str) -> std::fs::File {
    /// `ERROR_PIPE_BUSY`, `ERROR_FILE_NOT_FOUND`.
    const TRY_AGAIN: [i32; 2] = [231, 2];
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        match std::fs::OpenOptions::new().write(true).open(pipe) {
            Err(e)
                if TRY_AGAIN.contains(&e.raw_os_error().unwrap_or(0))
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            opened => return opened.unwrap(),
        }
    }
}

/// Runs `client` on a blocking thread.
async fn client<T: Send + 'static>(client: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(client).await.unwrap()
}

/// Notifies as a worker does, when started as one; does nothing in a normal test run.
#[test]
fn play() {
    if std::env::var_os(ROLE).is_none() {
        return;
    }
    herd::notify::ready().unwrap();
    herd::notify::notify(&[herd::notify::State::Status("warm")]).unwrap();
    std::process::exit(0);
}

#[test]
fn a_workers_ready_reaches_recv_with_its_real_pid() {
    let name = unique_pipe("ready");
    run(async {
        let mut pipe = NotifyPipe::bind(&name).unwrap();
        assert_eq!(pipe.name(), name);
        let exe = std::env::current_exe().unwrap();
        let mut worker = std::process::Command::new(exe)
            .args([
                "--exact",
                "supervisor::platform::windows::notify_pipe::tests::play",
            ])
            .args(["--test-threads=1", "--quiet"])
            .env(ROLE, "notify")
            .env("NOTIFY_SOCKET", &name)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Two connections, passed on as each is read: their order is not promised.
        let got: BTreeSet<_> = [next(&mut pipe).await, next(&mut pipe).await].into();
        let pid = worker.id();
        let expected = [
            (pid, "READY=1".to_string()),
            (pid, "STATUS=warm".to_string()),
        ];
        assert_eq!(got, expected.into());
        assert!(worker.wait().unwrap().success());
    });
}

#[test]
fn a_huge_message_is_cut_and_its_writer_told() {
    let name = unique_pipe("huge");
    run(async {
        let mut pipe = NotifyPipe::bind(&name).unwrap();
        let (done, wrote) = std::sync::mpsc::channel();
        let client = name.clone();
        // A thread of its own, not joined: were the write never to end, the test still would.
        std::thread::spawn(move || {
            let huge = vec![b'x'; 1 << 20];
            let _ = done.send(open(&client).write_all(&huge).is_ok());
        });
        let (pid, message) = next(&mut pipe).await;
        assert_eq!(pid, std::process::id());
        assert_eq!(message, "x".repeat(MAX_MESSAGE + 1));
        assert!(NotifyPipe::is_cut(message.as_bytes()));
        let wrote = tokio::task::spawn_blocking(move || wrote.recv_timeout(PATIENCE))
            .await
            .unwrap();
        assert_eq!(wrote, Ok(false), "the rest is refused, not read");
    });
}

#[test]
fn a_message_of_the_largest_size_is_whole() {
    let name = unique_pipe("largest");
    run(async {
        let mut pipe = NotifyPipe::bind(&name).unwrap();
        let path = name.clone();
        let largest = format!("STATUS={}", "y".repeat(MAX_MESSAGE - 7));
        let sent = largest.clone();
        client(move || open(&path).write_all(sent.as_bytes()).unwrap()).await;
        let (_, message) = next(&mut pipe).await;
        assert_eq!(message, largest);
        assert!(!NotifyPipe::is_cut(message.as_bytes()));
    });
}

#[test]
fn a_silent_client_does_not_block_the_others() {
    let name = unique_pipe("silent");
    run(async {
        let mut pipe = NotifyPipe::bind(&name).unwrap();
        let path = name.clone();
        let mut silent = client(move || open(&path)).await;
        let path = name.clone();
        client(move || open(&path).write_all(b"READY=1").unwrap()).await;
        assert_eq!(next(&mut pipe).await.1, "READY=1");
        // Still read in its own time: a server that waited for it would only now see the
        // first message, and this one's instance would be gone.
        silent.write_all(b"STATUS=late").unwrap();
        drop(silent);
        assert_eq!(next(&mut pipe).await.1, "STATUS=late");
    });
}

#[test]
fn a_second_server_on_the_same_name_is_refused() {
    let name = unique_pipe("twice");
    run(async {
        let _first = NotifyPipe::bind(&name).unwrap();
        let e = NotifyPipe::bind(&name).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(5), "ERROR_ACCESS_DENIED: {e}");
    });
}

/// With no next instance to be had, the one instance reads client after client: a client
/// whose message was cut (its rest left unread) or that closed after its message leaves
/// nothing to the next, whose message comes whole and as its own.
#[test]
fn the_only_instance_gives_each_client_only_its_own_message() {
    let name = unique_pipe("only");
    run(async {
        let pipe = SecurePipe::new(&name, &[]).unwrap();
        let first = pipe.first_instance().unwrap();
        let (sender, mut messages) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            let next =
                |_: &SecurePipe| Err(std::io::Error::other("no next instance, for the test"));
            super::serve_instances(&pipe, first, next, sender).await
        });
        for message in [
            &b"STATUS=first"[..],
            &[b'x'; 2 * MAX_MESSAGE],
            b"STATUS=third",
        ] {
            // What the server makes of it: itself, cut after `MAX_MESSAGE + 1` bytes.
            let expected = String::from_utf8_lossy(&message[..message.len().min(MAX_MESSAGE + 1)]);
            let (path, message) = (name.clone(), message.to_vec());
            // Each writes and closes (the cut one's rest is refused, not read).
            client(move || {
                let _ = open(&path).write_all(&message);
            })
            .await;
            let (_, got) = tokio::time::timeout(PATIENCE, messages.recv())
                .await
                .expect("a message in time")
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&got), expected);
        }
    });
}

/// While no instance can be made, renewing one tries again after a pause that doubles (10, 20,
/// 40... ms), neither spinning nor giving up, and the instance made once one can be is served.
/// Its `retry` counted the failures, and the success since.
#[test]
fn renewing_retries_with_a_growing_pause_until_an_instance_can_be_made() {
    /// Tries that fail: the two of `renew` (before and after it closes the instance), then
    /// four more, after pauses of 10, 20, 40 and 80 ms; the one after 160 ms more works.
    const FAILURES: u32 = 6;
    let name = unique_pipe("renew");
    run(async {
        let pipe = SecurePipe::new(&name, &[]).unwrap();
        let used = pipe.first_instance().unwrap();
        // Holds the name, so that renewing makes its instances with `next`, not as the first.
        let other = pipe.next_instance().unwrap();
        let tries = std::cell::Cell::new(0);
        let next = |pipe: &SecurePipe| {
            tries.set(tries.get() + 1);
            if tries.get() <= FAILURES {
                Err(std::io::Error::other("no instance, for the test"))
            } else {
                pipe.next_instance()
            }
        };
        let mut instances = Instances::new(&pipe, next);
        let start = tokio::time::Instant::now();
        let retry = &mut super::Retry::default();
        let renewing = super::renewed(&mut instances, used, retry);
        let mut renewed = tokio::time::timeout(PATIENCE, renewing)
            .await
            .expect("an instance once one can be made");
        let took = start.elapsed();
        assert_eq!(
            retry.failed().failures,
            1,
            "counted afresh once one was made"
        );
        assert_eq!(tries.get(), FAILURES + 1, "one try after each pause");
        assert!(took >= Duration::from_millis(310), "paused {took:?}");
        drop(other);
        let path = name.clone();
        let writer = tokio::task::spawn_blocking(move || open(&path).write_all(b"READY=1"));
        let _ = renewed.connect().await;
        writer.await.unwrap().unwrap();
        let (sender, mut messages) = tokio::sync::mpsc::channel(1);
        super::deliver(&mut renewed, &sender).await;
        let (pid, message) = messages.recv().await.unwrap();
        assert_eq!((pid, &message[..]), (std::process::id(), &b"READY=1"[..]));
    });
}
