use super::*;

#[test]
fn a_key_named_twice_is_refused() {
    let twice = br#"{"version":1,"command":"status","command":"stop"}"#;
    let refused = parse_request(twice).unwrap_err();
    let refused = String::from_utf8(refused.to_line()).unwrap();
    assert!(
        refused.contains("bad_request") && refused.contains("\\\"command\\\" twice"),
        "{refused}"
    );
    assert!(parse_request(br#"{"version":1,"command":"status"}"#).is_ok());
    for twice in [
        r#"{"version":1,"version":1,"command":"status"}"#,
        r#"{"version":1,"version":2,"command":"status"}"#,
        r#"{"version":1,"command":"sockets","only":["a"],"only":["b"]}"#,
        r#"{"version":1,"command":"scale","extra":{"a":1,"a":2}}"#,
    ] {
        assert_eq!(code(twice), ErrorCode::BadRequest, "{twice}");
    }
}

#[test]
fn version_1_is_the_integer_1() {
    for other in ["2", "0", "1.0", "1e0", "1.5", "-1", "18446744073709551616"] {
        let line = format!(r#"{{"version":{other},"command":"status"}}"#);
        assert_eq!(code(&line), ErrorCode::UnsupportedVersion, "{line}");
    }
    // Said as written: see an_unsupported_version_is_said_as_written.
    for not_a_number in ["\"1\"", "null", "true", "[1]", "{}"] {
        let line = format!(r#"{{"version":{not_a_number},"command":"status"}}"#);
        assert_eq!(code(&line), ErrorCode::BadRequest, "{line}");
    }
}

/// A version is said as written when it is an integer, as the arguments are read: `-0` is
/// version 0 (it was "protocol version -0.0", serde_json's float), and one beyond 64 bits is
/// out of range (it was "protocol version 1.8446744073709552e19").
#[test]
fn an_unsupported_version_is_said_as_written() {
    for (version, said) in [
        ("-0", "protocol version 0 is not supported;"),
        (" -0 ", "protocol version 0 is not supported;"),
        ("0", "protocol version 0 is not supported;"),
        ("2", "protocol version 2 is not supported;"),
        (
            "18446744073709551616",
            "protocol version 18446744073709551616 is out of range (beyond 64 bits);",
        ),
        (
            "-9223372036854775809",
            "protocol version -9223372036854775809 is out of range (beyond 64 bits);",
        ),
        // Floats are floats: `-0.0` is not `-0`.
        ("-0.0", "protocol version -0.0 is not supported;"),
        ("1.0", "protocol version 1.0 is not supported;"),
    ] {
        let line = format!(r#"{{"version":{version},"command":"status"}}"#);
        let error = parse_request(line.as_bytes()).unwrap_err().error.unwrap();
        assert_eq!(error.code, ErrorCode::UnsupportedVersion, "{line}");
        assert!(error.message.starts_with(said), "{line}: {}", error.message);
        assert!(
            error.message.ends_with("(send \"version\": 1)"),
            "{}",
            error.message
        );
    }
}

fn code(line: &str) -> ErrorCode {
    parse_request(line.as_bytes())
        .unwrap_err()
        .error
        .unwrap()
        .code
}

#[test]
fn huge_durations_are_refused() {
    for line in [
        r#"{"version":1,"command":"stop","grace_ms":18446744073709551615}"#,
        r#"{"version":1,"command":"upgrade","timeout_ms":18446744073709551615}"#,
        r#"{"version":1,"command":"stop","grace_ms":31536000001}"#,
    ] {
        assert_eq!(code(line), ErrorCode::InvalidArgument, "{line}");
    }
    assert!(parse_request(br#"{"version":1,"command":"stop","grace_ms":31536000000}"#).is_ok());
}

/// `-0` is an integer in JSON: a `delta` of 0 (`herd scale` by nothing), not a float.
#[test]
fn a_delta_of_minus_zero_is_zero() {
    for line in [
        r#"{"version":1,"command":"scale","delta":-0}"#,
        r#"{"version":1,"command":"scale", "delta" : -0 }"#,
    ] {
        let r = parse_request(line.as_bytes()).unwrap();
        let scale = Command::Scale {
            workers: None,
            delta: Some(0),
            min: None,
            max: None,
        };
        assert_eq!(r.command, scale, "{line}");
    }
    // Every integer member alike: the same request as with 0.
    for (minus, plus) in [
        (
            r#"{"version":1,"command":"scale","workers":-0}"#,
            r#"{"version":1,"command":"scale","workers":0}"#,
        ),
        (
            r#"{"version":1,"command":"stop","grace_ms":-0}"#,
            r#"{"version":1,"command":"stop","grace_ms":0}"#,
        ),
        (
            r#"{"version":1,"command":"scale","min":-0,"max":2}"#,
            r#"{"version":1,"command":"scale","min":0,"max":2}"#,
        ),
    ] {
        let (minus, plus) = (
            parse_request(minus.as_bytes()),
            parse_request(plus.as_bytes()),
        );
        assert_eq!(format!("{minus:?}"), format!("{plus:?}"));
    }
    for line in [
        r#"{"version":1,"command":"scale","delta":-0.0}"#,
        r#"{"version":1,"command":"scale","delta":-0e0}"#,
        r#"{"version":1,"command":"scale","delta":0.0}"#,
        r#"{"version":1,"command":"scale","delta":"-0"}"#,
    ] {
        assert_eq!(code(line), ErrorCode::InvalidArgument, "{line}");
    }
}

/// `-0` is zero wherever the protocol takes an integer, not only as `delta`: `workers`,
/// `slot`, `lines` and the durations in ms were refused as "floating point `-0.0`".
#[test]
fn minus_zero_is_zero_for_every_integer_argument() {
    let request = |line: &str| parse_request(line.as_bytes()).ok().map(|r| r.command);
    assert_eq!(
        request(r#"{"version":1,"command":"scale","workers":-0}"#),
        Some(Command::Scale {
            workers: Some(0),
            delta: None,
            min: None,
            max: None,
        })
    );
    assert_eq!(
        request(r#"{"version":1,"command":"logs","slot":-0,"lines": -0 }"#),
        Some(Command::Logs {
            slot: Some(0),
            lines: Some(0),
            follow: false,
            after: None,
            of: None,
        })
    );
    assert_eq!(
        request(r#"{"version":1,"command":"signal","signal":"HUP","slot":-0}"#),
        Some(Command::Signal {
            signal: "HUP".into(),
            slot: Some(0),
        })
    );
    assert_eq!(
        request(r#"{"version":1,"command":"upgrade","timeout_ms":-0}"#),
        Some(Command::Upgrade {
            timeout_ms: Some(0),
            reload_config: false,
        })
    );
    for line in [
        r#"{"version":1,"command":"scale","workers":-0.0}"#,
        r#"{"version":1,"command":"logs","lines":-0e0}"#,
        r#"{"version":1,"command":"scale","workers":"-0"}"#,
    ] {
        assert_eq!(code(line), ErrorCode::InvalidArgument, "{line}");
    }
}

/// An integer beyond 64 bits is out of range, said of the integer it is: serde_json reads it
/// as a float, and the answer was "invalid type: floating point `-9.223372036854776e18`,
/// expected i64", for `-9223372036854775809`.
#[test]
fn an_integer_beyond_64_bits_is_out_of_range_not_a_float() {
    for (line, said) in [
        (
            r#"{"version":1,"command":"scale","delta":-9223372036854775809}"#,
            "scale: delta -9223372036854775809 is out of range",
        ),
        (
            r#"{"version":1,"command":"logs","lines":18446744073709551616}"#,
            "logs: lines 18446744073709551616 is out of range",
        ),
    ] {
        let error = parse_request(line.as_bytes()).unwrap_err().error.unwrap();
        assert_eq!(error.code, ErrorCode::InvalidArgument, "{line}");
        assert!(error.message.starts_with(said), "{line}: {}", error.message);
        assert!(!error.message.contains("float"), "{}", error.message);
    }
    // Within 64 bits, the argument's own bounds say what is wrong.
    let line = r#"{"version":1,"command":"scale","delta":-9223372036854775808}"#;
    assert!(parse_request(line.as_bytes()).is_ok());
}

#[test]
fn parses_commands() {
    let r = parse_request(br#"{"version":1,"command":"scale","delta":-2}"#).unwrap();
    assert_eq!(
        r.command,
        Command::Scale {
            workers: None,
            delta: Some(-2),
            min: None,
            max: None,
        }
    );
    let r = parse_request(br#"{"version":1,"command":"status"}"#).unwrap();
    assert_eq!(r.command, Command::Status);
    let line = serde_json::to_string(&Request {
        version: 1,
        command: Command::Signal {
            signal: "HUP".into(),
            slot: Some(2),
        },
    })
    .unwrap();
    assert_eq!(
        line,
        r#"{"version":1,"command":"signal","signal":"HUP","slot":2}"#
    );
}

#[test]
fn classifies_bad_requests() {
    assert_eq!(code("garbage"), ErrorCode::BadRequest);
    assert_eq!(code("[1]"), ErrorCode::BadRequest);
    assert_eq!(code(r#"{"command":"status"}"#), ErrorCode::BadRequest);
    assert_eq!(
        code(r#"{"version":9,"command":"status"}"#),
        ErrorCode::UnsupportedVersion
    );
    assert_eq!(
        code(r#"{"version":1,"command":"dance"}"#),
        ErrorCode::UnknownCommand
    );
    assert_eq!(
        code(r#"{"version":1,"command":"scale","workers":"x"}"#),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(r#"{"version":1,"command":"status","extra":1}"#),
        ErrorCode::InvalidArgument
    );
}
