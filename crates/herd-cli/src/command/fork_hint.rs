//! Why a worker could not be forked, in the terms of the limit a user raises: with thousands
//! of workers, `fork` fails with `EAGAIN` once a process limit is reached and with `ENOMEM`
//! when memory runs out, and the bare errno ("Resource temporarily unavailable") names none.

/// The hint that follows `cannot fork: ERROR` for the errno `errno` (empty if none fits).
pub fn fork_hint(errno: Option<i32>) -> &'static str {
    match errno {
        Some(libc::EAGAIN) => {
            "; a process limit is reached (each worker is a process): the user's \
             (`ulimit -u`, systemd's LimitNPROC=), the service's (systemd's TasksMax=, a \
             cgroup's pids.max) or the system's (kernel.threads-max, kernel.pid_max): raise \
             it or run fewer workers"
        }
        Some(libc::ENOMEM) => {
            "; out of memory for a new process: free memory, raise the service's memory limit \
             (systemd's MemoryMax=, a cgroup's memory.max) or run fewer workers"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_limit_and_memory_are_named() {
        assert!(fork_hint(Some(libc::EAGAIN)).contains("ulimit -u"));
        assert!(fork_hint(Some(libc::EAGAIN)).contains("TasksMax="));
        assert!(fork_hint(Some(libc::ENOMEM)).contains("out of memory"));
        assert_eq!(fork_hint(Some(libc::EPERM)), "");
        assert_eq!(fork_hint(None), "");
    }
}
