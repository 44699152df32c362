//! What a request head asks of herd's HTTP endpoints: its route, read from the request line,
//! and its header fields checked as RFC 9112 has a server check them.

use super::Endpoint;

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET` (or `HEAD`) `/metrics` or `/` on `--metrics` (a query string is ignored).
    Scrape,
    /// `GET` (or `HEAD`) `/healthz`.
    Live,
    /// `GET` (or `HEAD`) `/readyz`.
    Ready,
    /// A request line that is not `METHOD TARGET HTTP/1.x`: not HTTP/1.
    BadRequest,
    /// A header field that RFC 9112 has a server refuse, and why ([`field_fault`]).
    BadField(&'static str),
    /// A method other than `GET` and `HEAD` on a path served here, or `OPTIONS *`.
    MethodNotAllowed,
    /// Any other path.
    NotFound(Endpoint),
}

/// Routes a request on `endpoint` by its request line; and whether it is a `HEAD`, which is
/// answered without the body.
pub fn route(head: &str, endpoint: Endpoint) -> (Route, bool) {
    let line = head.lines().next().unwrap_or("");
    let Some([method, target, version]) = request_line(line) else {
        return (Route::BadRequest, false);
    };
    if let Some(why) = field_fault(head, version != "HTTP/1.0") {
        return (Route::BadField(why), false);
    }
    let path = path_of(target).split('?').next().unwrap_or("");
    let probe = match path {
        "/healthz" => Some(Route::Live),
        "/readyz" => Some(Route::Ready),
        _ => None,
    };
    let metrics = endpoint == Endpoint::Metrics && matches!(path, "/metrics" | "/");
    // `OPTIONS *` asks of the server as a whole (docs/metrics.md says why 405 and not 2xx).
    let served = probe.is_some() || metrics || (method == "OPTIONS" && target == "*");
    let route = match (method, probe) {
        ("GET" | "HEAD", Some(probe)) => probe,
        ("GET" | "HEAD", None) if metrics => Route::Scrape,
        _ if served => Route::MethodNotAllowed,
        _ => Route::NotFound(endpoint),
    };
    (route, method == "HEAD")
}

/// The method, target and version of a request line, `METHOD TARGET HTTP/1.x`; None when it
/// is no HTTP/1 request line.
pub(super) fn request_line(line: &str) -> Option<[&str; 3]> {
    // ASCII whitespace, as the reader splits a line that has not ended (`cannot_be_http`).
    let words: Vec<&str> = line.split_ascii_whitespace().collect();
    let &[method, target, version] = words.as_slice() else {
        return None;
    };
    (is_token(method) && is_http_version(version)).then_some([method, target, version])
}

/// What is wrong with the header fields of `head` (after its request line, up to its blank
/// line) that RFC 9112 has a server answer `400`: a line that is not `NAME: VALUE` with a token
/// for a name and no whitespace before the colon (section 5.1), a line folded onto the one
/// before it (5.2), no `Host` in a request of HTTP/1.1 or later (`host_needed`), more than
/// one, or one whose value is no host (3.2). `None` when they are well formed.
fn field_fault(head: &str, host_needed: bool) -> Option<&'static str> {
    let mut hosts = 0;
    for (at, line) in head.split('\n').skip(1).enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if at == 0 && line.starts_with([' ', '\t']) {
            return Some(
                "whitespace between the request line and the first header field: remove it",
            );
        }
        if line.starts_with([' ', '\t']) {
            return Some(
                "a header field folded onto the line before it: send each on a line of its own",
            );
        }
        match line.split_once(':') {
            Some((name, value)) if is_token(name) => {
                if name.eq_ignore_ascii_case("host") {
                    if !is_host(value.trim_matches([' ', '\t'])) {
                        return Some("the Host header field is not HOST[:PORT]: send the address asked, such as Host: 127.0.0.1:9090");
                    }
                    hosts += 1;
                }
            }
            _ => return Some("a header field line is not NAME: VALUE (a token, then a colon, with no space before it)"),
        }
    }
    match hosts {
        0 if host_needed => Some("an HTTP/1.1 request needs a Host header field: send Host: followed by the address asked"),
        0 | 1 => None,
        _ => Some("a request has one Host header field, not several"),
    }
}

/// Whether `value` is a Host field's value (RFC 9110, section 7.2; RFC 3986's `host [":"
/// port]`): a name or IPv4 address of unreserved, percent-encoded and sub-delimiter characters,
/// or an IP literal in brackets, then an optional port of digits. Empty is allowed (a target
/// with no authority).
fn is_host(value: &str) -> bool {
    let name = |b: u8| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b);
    let (host, port) = match value.strip_prefix('[') {
        // An IPv6 address (with a zone, `%25eth0`, as some clients send) or an IPvFuture.
        Some(literal) => match literal.split_once(']') {
            Some((inside, rest)) if inside.contains([':', '.']) => {
                if !inside.bytes().all(|b| b == b':' || name(b)) {
                    return false;
                }
                ("", rest)
            }
            _ => return false,
        },
        None => match value.find(':') {
            Some(at) => (&value[..at], &value[at..]),
            None => (value, ""),
        },
    };
    let port_ok = match port.strip_prefix(':') {
        Some(digits) => {
            digits.bytes().all(|b| b.is_ascii_digit())
                && digits
                    .parse::<u32>()
                    .map_or(digits.is_empty(), |p| p <= 65535)
        }
        None => port.is_empty(),
    };
    host.bytes().all(name) && port_ok
}

/// Whether `method` is an HTTP token (RFC 9110's `tchar`s), as every method is.
fn is_token(method: &str) -> bool {
    !method.is_empty() && method.bytes().all(is_tchar)
}

/// Whether `b` may be in a token (RFC 9110, section 5.6.2): a method, a field name.
pub(super) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether `version` is HTTP/1's: `HTTP/1.` and a digit (`HTTP/1.1`). `HTTP/2.0` (h2's
/// preface, `PRI * HTTP/2.0`), `HTTP/0.9` or `HTTP/9.9` is no HTTP/1 request line.
fn is_http_version(version: &str) -> bool {
    matches!(version.strip_prefix("HTTP/1.").map(str::as_bytes), Some(&[minor]) if minor.is_ascii_digit())
}

/// The path and query of a request target: an absolute-form one (`http://host:port/metrics`,
/// which a client sends to a proxy, and a server must accept) without its scheme and authority.
fn path_of(target: &str) -> &str {
    let Some((scheme, rest)) = target.split_once("://") else {
        return target;
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return target;
    }
    // An empty path is `/` (a query, ignored anyway, may follow the authority at once).
    match rest.find(['/', '?']) {
        Some(at) if rest[at..].starts_with('/') => &rest[at..],
        _ => "/",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_routed_by_method_and_path_without_the_query() {
        let r = |line: &str| route(&format!("{line}\r\nHost: x\r\n\r\n"), Endpoint::Metrics).0;
        assert_eq!(r("GET /metrics HTTP/1.1"), Route::Scrape);
        assert_eq!(r("GET / HTTP/1.0"), Route::Scrape);
        assert_eq!(r("GET /metrics?x HTTP/1.1"), Route::Scrape);
        assert_eq!(r("GET /metrics?a=1&b=2 HTTP/1.1"), Route::Scrape);
        assert_eq!(r("HEAD /metrics HTTP/1.1"), Route::Scrape);
        assert_eq!(r("POST /metrics HTTP/1.1"), Route::MethodNotAllowed);
        assert_eq!(r("PUT /?x HTTP/1.1"), Route::MethodNotAllowed);
        assert_eq!(
            r("GET /metricsx HTTP/1.1"),
            Route::NotFound(Endpoint::Metrics)
        );
        assert_eq!(
            r("GET /nope?metrics HTTP/1.1"),
            Route::NotFound(Endpoint::Metrics)
        );
        assert_eq!(r("GET /healthz HTTP/1.1"), Route::Live);
        assert_eq!(r("GET /readyz?verbose HTTP/1.1"), Route::Ready);
    }

    /// What is not an HTTP/1 request line is answered 400, on either endpoint; a well-formed
    /// request for a path not served here is still 404.
    #[test]
    fn a_request_that_is_not_http_is_a_bad_request() {
        for endpoint in [Endpoint::Metrics, Endpoint::Health] {
            let r = |line: &str| route(&format!("{line}\r\nHost: x\r\n\r\n"), endpoint).0;
            for garbage in [
                "",
                "hello",
                "GET",
                "GET /healthz",
                "GET /healthz HTTP/1.1 extra",
                "GET /healthz HTTX/1.1",
                "GET /healthz HTTP/11",
                "G(T /healthz HTTP/1.1",
                "\u{1}\u{2}\u{3} / HTTP/1.1",
                "SSH-2.0-OpenSSH_9.6",
                // Not HTTP/1: these were served as HTTP/1.1 (`PRI`, h2's preface, was a 404).
                "PRI * HTTP/2.0",
                "GET /healthz HTTP/2.0",
                "GET /healthz HTTP/0.9",
                "GET /healthz HTTP/9.9",
            ] {
                assert_eq!(r(garbage), Route::BadRequest, "{garbage:?}");
            }
            assert_eq!(r("GET /nope HTTP/1.1"), Route::NotFound(endpoint));
            assert_eq!(r("BREW /nope HTTP/1.0"), Route::NotFound(endpoint));
            assert_eq!(r("GET /healthz HTTP/1.0"), Route::Live);
        }
    }

    /// Header fields RFC 9112 has a server refuse are answered 400 (they were served 200): a line
    /// that is no `NAME: VALUE`, whitespace before the colon, a folded line, an HTTP/1.1 request
    /// without `Host`, or with two, or a `Host` that is no `HOST[:PORT]`. HTTP/1.0 needs no
    /// `Host`; what follows the head is no field.
    #[test]
    fn malformed_header_fields_are_a_bad_request() {
        for endpoint in [Endpoint::Metrics, Endpoint::Health] {
            let r = |head: &str| route(head, endpoint).0;
            let bad = |head: &str| matches!(r(head), Route::BadField(_));
            for head in [
                "GET /healthz HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n",
                "GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n",
                "GET /healthz HTTP/1.1\r\nHost: x\r\nX-A : 1\r\n\r\n",
                "GET /healthz HTTP/1.1\r\nHost: x\r\n: empty name\r\n\r\n",
                "GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\n\r\n",
                "GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\tfolded\r\n\r\n",
                "GET /healthz HTTP/1.1\r\nX(A): 1\r\nHost: x\r\n\r\n",
                "GET /healthz HTTP/1.1\r\n\r\n",
                "GET /healthz HTTP/1.1\r\nX-Host: x\r\n\r\n",
                "GET /healthz HTTP/1.1\r\nHost: x\r\nhost: y\r\n\r\n",
                "GET /healthz HTTP/1.0\r\nHost: x\r\nHOST: x\r\n\r\n",
                "GET /healthz HTTP/1.1\nHost: x\nbad line\n\n",
                "GET /healthz HTTP/1.1\r\nHost: a b\r\n\r\n",
                "GET /healthz HTTP/1.1\r\nHost: x/y\r\n\r\n",
                "GET /healthz HTTP/1.1\r\nHost: user@x\r\n\r\n",
                "GET /healthz HTTP/1.1\r\nHost: x:80:81\r\n\r\n",
                "GET /healthz HTTP/1.1\r\nHost: x:port\r\n\r\n",
                "GET /healthz HTTP/1.1\r\nHost: [::1\r\n\r\n",
                "GET /healthz HTTP/1.1\r\nHost: [zz]:80\r\n\r\n",
                "GET /healthz HTTP/1.1\r\nHost: []\r\n\r\n",
                "GET /healthz HTTP/1.1\r\nHost: [::1]:65536\r\n\r\n",
                "GET /healthz HTTP/1.1\r\nHost: x:123456\r\n\r\n",
                "GET /healthz HTTP/1.1\r\nHost: [::1/64]\r\n\r\n",
                "GET /healthz HTTP/1.1\r\nHost: [::1]x\r\n\r\n",
                "GET /healthz HTTP/1.0\r\nHost: <script>\r\n\r\n",
            ] {
                assert!(bad(head), "{head:?}: {:?}", r(head));
            }
            for head in [
                "GET /healthz HTTP/1.0\r\n\r\n",
                "GET /healthz HTTP/1.1\r\nhost:x\r\n\r\n",
                "GET /healthz HTTP/1.1\nHost: x\nX-A:\n\n",
                "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nno colon in a body\r\n",
                "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:9090\r\n\r\n",
                "GET /healthz HTTP/1.1\r\nHost: [::1]:9090\r\n\r\n",
                "GET /healthz HTTP/1.1\r\nHost: [::ffff:127.0.0.1]\r\n\r\n",
                "GET /healthz HTTP/1.1\r\nHost: my-host.example_1\t\r\n\r\n",
                "GET /healthz HTTP/1.1\r\nHost: x:\r\n\r\n",
                "GET /healthz HTTP/1.1\r\nHost:\r\n\r\n",
                "GET /healthz HTTP/1.1\r\nHost: %41\r\n\r\n",
                "GET /healthz HTTP/1.1\r\nHost: [fe80::1%25eth0]:9090\r\n\r\n",
                "GET /healthz HTTP/1.1\r\nHost: [v1.fe80::a+eth0]\r\n\r\n",
                "GET /healthz HTTP/1.1\r\nHost: EXAMPLE.com.:65535\r\n\r\n",
            ] {
                assert_eq!(r(head), Route::Live, "{head:?}");
            }
            let Route::BadField(why) = r("GET /readyz HTTP/1.1\r\n\r\n") else {
                unreachable!()
            };
            assert!(why.contains("needs a Host header field"), "{why}");
            let Route::BadField(why) = r("GET /readyz HTTP/1.1\r\n Host: x\r\n\r\n") else {
                unreachable!()
            };
            assert!(
                why.starts_with("whitespace between the request line"),
                "{why}"
            );
        }
    }

    /// `OPTIONS *` asks which methods the server serves: 405 with `Allow: GET, HEAD`, as a path
    /// served here says, on either endpoint (it was 404, `*` being no path herd serves). The
    /// asterisk is no path for another method, nor `OPTIONS` of an unknown path.
    #[test]
    fn options_asterisk_is_told_the_methods_served() {
        for endpoint in [Endpoint::Metrics, Endpoint::Health] {
            let r = |line: &str| route(&format!("{line}\r\nHost: x\r\n\r\n"), endpoint);
            assert_eq!(r("OPTIONS * HTTP/1.1"), (Route::MethodNotAllowed, false));
            assert_eq!(r("OPTIONS /healthz HTTP/1.1").0, Route::MethodNotAllowed);
            assert_eq!(r("OPTIONS /nope HTTP/1.1").0, Route::NotFound(endpoint));
            assert_eq!(r("GET * HTTP/1.1").0, Route::NotFound(endpoint));
            assert_eq!(r("POST * HTTP/1.1").0, Route::NotFound(endpoint));
        }
    }

    #[test]
    fn an_absolute_form_target_is_routed_by_its_path() {
        let r = |line: &str| route(&format!("{line}\r\nHost: x\r\n\r\n"), Endpoint::Metrics).0;
        assert_eq!(
            r("GET http://127.0.0.1:9090/metrics HTTP/1.1"),
            Route::Scrape
        );
        assert_eq!(r("GET HTTP://[::1]:9090/readyz?x HTTP/1.1"), Route::Ready);
        assert_eq!(r("GET https://host HTTP/1.1"), Route::Scrape);
        assert_eq!(r("GET http://host?x HTTP/1.1"), Route::Scrape);
        assert_eq!(
            r("GET http://host/nope HTTP/1.1"),
            Route::NotFound(Endpoint::Metrics)
        );
        assert_eq!(
            r("GET ftp://host/metrics HTTP/1.1"),
            Route::NotFound(Endpoint::Metrics)
        );
    }

    #[test]
    fn health_alone_serves_the_probes_get_and_head() {
        let r = |line: &str| route(&format!("{line}\r\nHost: x\r\n\r\n"), Endpoint::Health);
        assert_eq!(r("GET /healthz HTTP/1.1"), (Route::Live, false));
        assert_eq!(r("HEAD /readyz HTTP/1.1"), (Route::Ready, true));
        assert_eq!(r("POST /readyz HTTP/1.1"), (Route::MethodNotAllowed, false));
        assert_eq!(
            r("GET /metrics HTTP/1.1"),
            (Route::NotFound(Endpoint::Health), false)
        );
        assert_eq!(
            r("GET / HTTP/1.1"),
            (Route::NotFound(Endpoint::Health), false)
        );
    }
}
