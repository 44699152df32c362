//! Why a worker's resource limit could not be set (`setrlimit` says only "Operation not
//! permitted"): a hard limit above the system's ceiling for open files, or above herd's own
//! without `CAP_SYS_RESOURCE`, which root in a container often lacks.

/// Why raising `resource`'s hard limit to `hard` is not permitted: above the system's
/// ceiling for open files, or above herd's own hard limit without `CAP_SYS_RESOURCE`.
pub fn limit_hint(resource: i32, hard: u64) -> String {
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|_| resource == libc::RLIMIT_NOFILE as i32);
    match nr_open {
        Some(ceiling) if hard > ceiling => format!(
            "; {} is above the system's ceiling for open files (fs.nr_open = {ceiling}): \
             give at most {ceiling}",
            crate::cli::show_rlimit(hard)
        ),
        _ if !herd_sys::process::has_cap_sys_resource() => {
            let own = herd_sys::process::hard_limit(resource).ok();
            above_own_hint(hard, own, herd_sys::process::effective_uid() == 0)
        }
        _ => String::new(),
    }
}

/// The hint for a hard limit `hard` refused to a herd without `CAP_SYS_RESOURCE`, whose own
/// hard limit is `own` (when known), running as root (`root`: in a container that withholds
/// the capability) or not. Nothing when `hard` is within herd's own.
fn above_own_hint(hard: u64, own: Option<u64>, root: bool) -> String {
    let who = match root {
        true => "herd runs as root without it, as in many containers",
        false => "herd is not root and lacks it",
    };
    match own {
        Some(own) if hard > own => format!(
            "; {} is above herd's own hard limit {}, and only CAP_SYS_RESOURCE may raise one \
             ({who}): give at most {}, or raise herd's own (`ulimit -H`, systemd's Limit...=)",
            crate::cli::show_rlimit(hard),
            crate::cli::show_rlimit(own),
            crate::cli::show_rlimit(own)
        ),
        Some(_) => String::new(),
        None => format!(
            "; raising a hard limit above herd's own needs CAP_SYS_RESOURCE ({who}): lower it"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_above_herds_own_names_both_and_the_capability() {
        let hint = above_own_hint(herd_sys::process::RLIM_INFINITY, Some(8 << 20), true);
        assert!(
            hint.contains("unlimited is above herd's own hard limit 8388608"),
            "{hint}"
        );
        assert!(hint.contains("root without it"), "{hint}");
        assert!(hint.contains("give at most 8388608"), "{hint}");
        let hint = above_own_hint(100, None, false);
        assert!(
            hint.contains("CAP_SYS_RESOURCE (herd is not root"),
            "{hint}"
        );
        assert!(hint.ends_with("lower it"), "{hint}");
        // Within herd's own (refused for another reason): no such hint.
        assert_eq!(above_own_hint(100, Some(200), false), "");
    }
}
