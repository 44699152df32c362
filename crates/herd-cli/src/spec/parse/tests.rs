//! Parsing `--bind`: every address form, name and option, and what is refused.

use super::*;
use std::net::Ipv4Addr;

fn tcp(host: Host, port: u16) -> Address {
    Address::Tcp(HostPort {
        host,
        port,
        scope: 0,
    })
}

fn ok(text: &str) -> BindSpec {
    text.parse()
        .unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
}

fn err(text: &str) -> String {
    match text.parse::<BindSpec>() {
        Ok(spec) => panic!("{text:?} should fail, got {spec:?}"),
        Err(e) => e,
    }
}

#[test]
fn address_forms() {
    let lo = Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(ok("127.0.0.1:8080").address, tcp(lo.clone(), 8080));
    assert_eq!(ok(":8000").address, tcp(Host::Any, 8000));
    assert_eq!(ok("tcp://127.0.0.1:0").address, tcp(lo.clone(), 0));
    assert_eq!(
        ok("[::1]:80").address,
        tcp(Host::Ip("::1".parse().unwrap()), 80)
    );
    let scoped = |text: &str| match ok(text).address {
        Address::Tcp(hp) => hp.scope,
        other => panic!("{other:?}"),
    };
    assert_eq!(scoped("[fe80::1%7]:80"), 7);
    if let Some(lo) = interface_index("lo") {
        assert_eq!(scoped("[fe80::1%lo]:80"), lo);
    }
    assert_eq!(
        ok("localhost:80").address,
        tcp(Host::Name("localhost".into()), 80)
    );
    assert_eq!(
        ok("udp://127.0.0.1:53").address,
        Address::Udp(HostPort {
            host: lo,
            port: 53,
            scope: 0
        })
    );
    assert_eq!(
        ok("unix:/run/app.sock").address,
        Address::UnixPath("/run/app.sock".into())
    );
}

#[test]
#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_sockets_on_linux() {
    assert_eq!(
        ok("unix:@herd-test").address,
        Address::UnixAbstract("herd-test".into())
    );
}

#[test]
fn names_and_options() {
    let spec = ok("http=:8000,backlog=128,nodelay,nonblocking");
    assert_eq!(spec.name.as_deref(), Some("http"));
    assert_eq!(spec.options.backlog, Some(128));
    assert!(spec.options.nodelay && spec.options.nonblocking);
    let spec = ok("api.v2=unix:/tmp/a=b.sock,mode=660");
    assert_eq!(spec.name.as_deref(), Some("api.v2"));
    assert_eq!(spec.address, Address::UnixPath("/tmp/a=b.sock".into()));
    assert_eq!(spec.options.mode, Some(0o660));
    assert_eq!(ok("unix:/tmp/x=y").name, None);
    assert!(ok("[::]:80,v6only").options.v6only);
    assert!(ok("app=:8080,stdin").options.stdin);
    assert!(ok("udp://:53,stdin").options.stdin);
    assert!(!ok(":8080").options.stdin);
}

#[test]
fn errors_say_what_is_wrong() {
    for (text, needle) in [
        ("", "missing address"),
        ("http=", "missing address"),
        ("8080", "write :8080"),
        ("localhost", "missing port"),
        (":http", "is not a number"),
        (":70000", "out of range"),
        ("::1:80", "need brackets"),
        ("[::1:80", "missing ']'"),
        ("[zz]:80", "not an IPv6 address"),
        ("sctp://h:1", "unknown scheme"),
        ("tcp:127.0.0.1:80", "write tcp://127.0.0.1:80"),
        ("udp:[::1]:53", "write udp://[::1]:53"),
        ("unix:", "empty path"),
        (":80,backlog=0", "not a positive number"),
        (":80,backlog", "needs a value"),
        (":80,nodelay=1", "takes no value"),
        (":80,fast", "unknown option 'fast'"),
        (":80,nodelay,nodelay", "given twice"),
        (":80,stdin=1", "takes no value"),
        (":80,stdin,stdin", "given twice"),
        ("udp://:53,backlog=5", "stream sockets"),
        ("unix:/a,nodelay", "applies to TCP"),
        ("127.0.0.1:80,v6only", "IPv6"),
        ("[::ffff:127.0.0.1]:80,v6only", "an IPv4-mapped address"),
        (":80,mode=777", "Unix socket paths"),
        ("unix:/a,mode=999", "octal"),
        ("=:80", "empty socket name"),
        ("bad host:80", "not a valid host"),
        ("ünï=127.0.0.1:80", "invalid socket name 'ünï'"),
        ("a b=:80", "invalid socket name 'a b'"),
        ("x*=unix:/a", "invalid socket name 'x*'"),
        ("[fe80::1]:80", "needs a scope"),
        ("[fe80::1%no-such-if0]:80", "not a network interface"),
    ] {
        let e = err(text);
        assert!(e.contains(needle), "{text:?}: {e:?} lacks {needle:?}");
    }
    let long = format!("unix:/{}", "x".repeat(200));
    assert!(err(&long).contains("the limit is 107"));
}
