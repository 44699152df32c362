//! LISTEN_FDS / LISTEN_PID / LISTEN_FDNAMES: sockets only for our own pid, one name per fd,
//! never a count other than the one promised.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let mut parts = text.splitn(3, '\n');
    let (fds, pid, names) = (parts.next(), parts.next(), parts.next());
    if let Ok(Some(parsed)) = herd_core::parse_listen_env(fds, pid, names, 4242) {
        assert_eq!(pid.and_then(|p| p.parse::<u32>().ok()), Some(4242));
        assert_eq!(fds.and_then(|f| f.parse::<usize>().ok()), Some(parsed.len()));
        for name in &parsed {
            herd_core::validate_name(name).expect("every name is valid");
        }
    }
});
