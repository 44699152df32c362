//! Blocking work off an async loop (the supervisor's, a command's), on a thread of its own.
//! tokio's `spawn_blocking` panics when its pool has no thread yet and the system refuses one
//! (out of memory, a thread limit); here that is an error the caller answers, as a failed
//! system call is.

use tokio::sync::oneshot;

/// Runs `work` on a new thread named `name`; its result arrives on the receiver, which is
/// closed with no value if `work` panicked. Fails when no thread can start.
pub fn run<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<oneshot::Receiver<T>> {
    let (done, result) = oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let _ = done.send(work());
        })?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_result_arrives_and_a_panic_closes_the_receiver() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let got = runtime.block_on(run("herd-test", || 7).unwrap());
        assert_eq!(got, Ok(7));
        let panicked =
            runtime.block_on(run("herd-test", || -> u8 { panic!("on purpose") }).unwrap());
        assert!(panicked.is_err());
    }
}
