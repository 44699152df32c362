//! The value parsers: bounds, names and messages.

use super::*;

#[test]
fn durations_are_bounded() {
    assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    assert_eq!(parse_duration("365days"), Ok(MAX_DURATION));
    for text in [
        "18446744073709551615",
        "99999999999999999999999",
        "366days",
        "600000000000000000000ms",
        "1000y",
    ] {
        let e = parse_duration(text).unwrap_err();
        assert!(e.contains("at most 365 days"), "{text}: {e}");
    }
    // Was: "'1y' is too long: durations are at most 365 days", for one year.
    for text in ["1y", "1year", "2 years", "12months", "12M"] {
        let e = parse_duration(text).unwrap_err();
        assert!(e.ends_with("a month 30.44: write 365d)"), "{text}: {e}");
    }
    assert!(!parse_duration("366days").unwrap_err().contains("a year"));
    assert!(parse_duration("-1").unwrap_err().contains("negative"));
    // Was: "(time unit needed, for example 1sec or 1ms)", "(expected number at 0)".
    for text in ["1.5", "0.5s", "2.25min"] {
        let e = parse_duration(text).unwrap_err();
        assert!(e.contains("fractions are not taken"), "{text}: {e}");
    }
    for text in ["inf", "NaN", "soon"] {
        let e = parse_duration(text).unwrap_err();
        assert_eq!(
            e,
            format!("'{text}' is not a duration; write e.g. 30s, 1m30s or 500ms")
        );
    }
    assert!(parse_positive_duration("0")
        .unwrap_err()
        .contains("positive"));
    assert!(parse_positive_duration("0s")
        .unwrap_err()
        .contains("positive"));
    assert!(parse_ready("delay=18446744073709551615")
        .unwrap_err()
        .contains("at most"));
    assert_eq!(parse_ready("delay=0"), Ok(ReadyMode::Delay(Duration::ZERO)));
}

#[test]
fn stop_signal_must_stop() {
    assert!(parse_stop_signal("STOP").unwrap_err().contains("SIGSTOP"));
    assert!(parse_stop_signal("19").is_err());
    assert_eq!(parse_stop_signal("QUIT"), Ok(Signal::QUIT));
}

#[test]
fn reserved_signals_are_refused_by_name() {
    let min = Signal::rt_min().unwrap();
    for n in 32..min {
        let e = parse_signal(&n.to_string()).unwrap_err();
        assert!(e.contains("reserved by the C library"), "{n}: {e}");
    }
    assert_eq!(parse_signal(&min.to_string()).unwrap().number(), min);
    assert_eq!(parse_signal("RTMAX-1").unwrap().number(), 63);
    assert!(parse_signal("65").unwrap_err().contains("is not a signal"));
}

#[test]
fn scale_targets_stay_in_range() {
    assert_eq!(parse_scale("3"), Ok(ScaleTarget::Set(3)));
    assert_eq!(parse_scale("+2"), Ok(ScaleTarget::Delta(2)));
    assert_eq!(parse_scale("-2"), Ok(ScaleTarget::Delta(-2)));
    assert_eq!(parse_scale("2..4"), Ok(ScaleTarget::Bounds(2, 4)));
    for text in [
        "+9223372036854775807",
        "-9223372036854775808",
        "99999999999999999999999",
        "+4097",
    ] {
        let e = parse_scale(text).unwrap_err();
        assert!(e.contains("at most 4096"), "{text}: {e}");
    }
    for text in ["", "+", "-", "+-1", "--1", "x", "1.5"] {
        assert!(parse_scale(text).is_err(), "{text}");
    }
    // A bound of 0 is named as autoscaling's, not as a herd's "at least 1 worker" (which
    // `herd scale 0` contradicts).
    for (text, fix) in [
        ("1..0", "1..1"),
        ("0..4", "1..4"),
        ("-0..3", "1..3"),
        ("5..0", "1..5"),
        ("0..9999999", "1..4096"),
    ] {
        let e = parse_scale(text).unwrap_err();
        assert!(
            e.contains("neither bound can be 0") && e.contains(fix),
            "{text}: {e}"
        );
    }
}

#[test]
fn negative_numbers_are_named() {
    assert!(parse_workers("-1")
        .unwrap_err()
        .contains("must be positive"));
    assert!(parse_umask("-1").unwrap_err().contains("must be positive"));
    assert!(parse_user("-1").unwrap_err().contains("must be positive"));
    assert_eq!(
        parse_group("-1").unwrap_err(),
        "'-1' is not a group: give a group name or a gid, which must be positive (0 or more)"
    );
    assert_eq!(
        parse_user("").unwrap_err(),
        "the user is empty: give a user name or a uid"
    );
    assert!(parse_slot("-1").unwrap_err().contains("numbered from 0"));
    let e = parse_number::<u64>("-1", 1, "--nofile").unwrap_err();
    assert!(
        e.contains("--nofile '-1'") && e.contains("must be positive"),
        "{e}"
    );
    assert!(parse_number::<u64>("0", 1, "--nofile").is_err());
    assert!(parse_rlimit("nofile=0").unwrap_err().contains("nofile=0"));
    assert!(parse_rlimit("nofile=0:10").is_err());
    assert!(parse_rlimit("core=0").is_ok());
}

#[test]
fn limits_that_kill_every_worker_are_refused() {
    for (text, needle) in [
        ("cpu=0", "no CPU time"),
        ("cpu=0:10", "no CPU time"),
        ("as=1", "at least 16777216 bytes (16384 KiB)"),
        ("as=16777215", "address space"),
        ("data=1000", "data segment"),
        ("stack=1", "at least 65536 bytes (64 KiB)"),
    ] {
        let e = parse_rlimit(text).unwrap_err();
        assert!(
            e.starts_with(&format!("{text}: ")) && e.contains(needle),
            "{e}"
        );
    }
    for text in [
        "cpu=1",
        "as=16777216",
        "data=unlimited",
        "stack=65536",
        "fsize=0",
    ] {
        assert!(parse_rlimit(text).is_ok(), "{text}");
    }
}

#[test]
fn unlimited_is_shown_as_unlimited() {
    assert_eq!(
        parse_rlimit("as=unlimited:1000").unwrap_err(),
        "the soft limit unlimited is above the hard limit 1000"
    );
    assert_eq!(
        parse_rlimit("nofile=2000:1000").unwrap_err(),
        "the soft limit 2000 is above the hard limit 1000"
    );
    assert_eq!(show_rlimit(herd_sys::process::RLIM_INFINITY), "unlimited");
    assert_eq!(show_rlimit(65536), "65536");
}

#[test]
fn huge_numbers_are_called_too_large() {
    let huge = "18446744073709551615";
    let e = parse_number::<u32>(huge, 1, "--max-surge").unwrap_err();
    assert_eq!(
        e,
        format!("--max-surge '{huge}' is too large: the maximum is 4294967295")
    );
    let e = parse_number::<u64>("18446744073709551616", 1, "--nofile").unwrap_err();
    assert!(
        e.contains("too large: the maximum is 18446744073709551615"),
        "{e}"
    );
    assert!(parse_number::<u32>("1x", 1, "--max-surge")
        .unwrap_err()
        .contains("not a whole number"));
    assert!(parse_workers(huge).unwrap_err().contains("at most 4096"));
    assert!(parse_slot(huge).unwrap_err().contains("slots 0 to 4095"));
    assert!(parse_slot("4096").unwrap_err().contains("too large"));
    // RLIM_INFINITY written as a number is not a limit: 'unlimited' says so.
    let infinity = herd_sys::process::RLIM_INFINITY.to_string();
    let e = parse_rlimit(&format!("nofile={infinity}")).unwrap_err();
    let most = herd_sys::process::RLIM_INFINITY - 1;
    assert!(
        e.contains(&format!(
            "too large: the maximum is {most}; write 'unlimited'"
        )),
        "{e}"
    );
    assert!(parse_rlimit(&format!("as={huge}9"))
        .unwrap_err()
        .contains("too large"));
}

/// `herd logs -n -0` is no line, as `-n 0` and `-n +0` are: it was refused as "must be 0 or
/// more", which it is.
#[test]
fn minus_zero_lines_are_zero_lines() {
    for zero in ["0", "+0", "-0", "-00"] {
        assert_eq!(parse_lines(zero), Ok(0), "{zero}");
    }
    for below in ["-1", "-01", "-", "--0"] {
        assert!(parse_lines(below).is_err(), "{below}");
    }
}

/// `-0` is 0 for every option that takes a number, as it was for `herd logs -n`: `herd logs
/// --worker -0` was refused ("slots are numbered from 0"), `--max-starting -0` and `-w -0`
/// were told to be positive rather than at least 1, `--grace -0` not to be negative.
#[test]
fn minus_zero_is_zero_everywhere() {
    for zero in ["-0", "-00"] {
        assert_eq!(parse_slot(zero), Ok(0), "{zero}");
        assert_eq!(parse_umask(zero), Ok(0), "{zero}");
        // A uid or gid of 0 (`00` is one too).
        assert_eq!(parse_user(zero).as_deref(), Ok(&zero[1..]), "{zero}");
        assert_eq!(parse_group(zero).as_deref(), Ok(&zero[1..]), "{zero}");
        assert_eq!(parse_duration(zero), Ok(Duration::ZERO), "{zero}");
        assert_eq!(parse_number::<u32>(zero, 0, "--ready-min"), Ok(0));
        assert_eq!(parse_rlimit(&format!("core={zero}")).unwrap().soft, 0);
        assert_eq!(
            parse_number::<u64>(zero, 1, "--nofile").unwrap_err(),
            format!("--nofile '{zero}': the value must be at least 1")
        );
        assert_eq!(
            parse_workers(zero).unwrap_err(),
            "a herd needs at least 1 worker"
        );
        assert_eq!(
            parse_positive_duration(zero).unwrap_err(),
            format!("'{zero}' is zero: the duration must be positive (e.g. 30s or 500ms)")
        );
        assert!(parse_rlimit(&format!("nofile={zero}"))
            .unwrap_err()
            .starts_with("nofile=0 leaves a worker unable"));
    }
    assert_eq!(
        parse_workers("-0..2").unwrap_err(),
        "a herd needs at least 1 worker"
    );
    assert_eq!(parse_duration("-0s"), Ok(Duration::ZERO));
    assert_eq!(parse_duration("-0ms"), Ok(Duration::ZERO));
    // Below zero stays refused, and so does what is no number.
    for below in ["-1", "-01", "-", "--0", "-+0", "-1s", "-0x"] {
        assert!(parse_slot(below).is_err(), "{below}");
        assert!(parse_umask(below).is_err(), "{below}");
        assert!(parse_user(below).is_err(), "{below}");
        assert!(parse_duration(below).is_err(), "{below}");
        assert!(
            parse_number::<u32>(below, 0, "--ready-min").is_err(),
            "{below}"
        );
        assert!(parse_workers(below).is_err(), "{below}");
    }
    assert!(parse_duration("-1")
        .unwrap_err()
        .contains("cannot be negative"));
}

/// `--metrics` and `--health` say what they take, not every address `--bind` takes (a path
/// is a Unix socket's there, and refused here all the same).
#[test]
fn an_http_endpoint_names_the_tcp_addresses_it_takes() {
    for text in ["/tmp/x", "unix:/tmp/x", "udp://127.0.0.1:1", "systemd"] {
        let e = parse_metrics(text).unwrap_err();
        assert!(
            e.contains("is not a TCP address for --metrics; write HOST:PORT"),
            "{text}: {e}"
        );
    }
    assert!(parse_health("127.0.0.1:0").is_ok());
}
