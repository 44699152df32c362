//! The HTTP endpoint: `GET /metrics`, one task per connection, a bounded number at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::CONTENT_TYPE;

/// A scrape waiting for the supervisor's rendering (an error if it could not be encoded).
pub type Scrape = oneshot::Sender<Result<String, std::fmt::Error>>;

/// The HTTP status, content type and body that answer a scrape: the rendering, or 500 if it
/// could not be encoded, or 503 if herd is stopping (`None`: no rendering will come).
fn scrape_response(
    rendered: Option<Result<String, std::fmt::Error>>,
) -> (&'static str, &'static str, String) {
    match rendered {
        Some(Ok(text)) => ("200 OK", CONTENT_TYPE, text),
        Some(Err(_)) => (
            "500 Internal Server Error",
            "text/plain; charset=utf-8",
            "herd cannot encode its metrics\n".to_string(),
        ),
        None => (
            "503 Service Unavailable",
            "text/plain; charset=utf-8",
            "herd is stopping\n".to_string(),
        ),
    }
}

/// The most scrapes served at once (fewer when herd has few fds: see
/// [`fdlimit::connection_cap`](crate::fdlimit::connection_cap); on Windows, whose handle limit
/// is 2^24, always this many).
pub const MAX_CONNECTIONS: usize = 64;

/// Serves `GET /metrics` on `listener`, asking the supervisor through `scrapes`. At most
/// [`MAX_CONNECTIONS`] connections are open at once; the next ones wait in the kernel's accept
/// queue, where they cost herd no fd, so a crowd of idle clients can delay scrapes but never
/// take the fds that supervision and the control socket need.
pub async fn serve(listener: TcpListener, scrapes: mpsc::Sender<Scrape>) {
    let limit = crate::fdlimit::handle_limit();
    let slots = Arc::new(Semaphore::new(crate::fdlimit::connection_cap(
        limit,
        MAX_CONNECTIONS,
    )));
    loop {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let scrapes = scrapes.clone();
        tokio::spawn(async move {
            let _permit = permit;
            // A client that does not send its request head in time loses its slot: idle
            // connections cannot keep scrapers waiting for long.
            let Ok(Ok(Some(head))) =
                tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await
            else {
                return;
            };
            let answer = async {
                let (status, extra, content_type, body) = match route(&head) {
                    Route::Scrape => {
                        let (reply, rendered) = oneshot::channel();
                        let rendered = match scrapes.send(reply).await {
                            Ok(()) => rendered.await.ok(),
                            Err(_) => None,
                        };
                        let (status, content_type, body) = scrape_response(rendered);
                        (status, "", content_type, body)
                    }
                    Route::MethodNotAllowed => (
                        "405 Method Not Allowed",
                        "Allow: GET\r\n",
                        "text/plain; charset=utf-8",
                        "only GET is served\n".to_string(),
                    ),
                    Route::NotFound => (
                        "404 Not Found",
                        "",
                        "text/plain; charset=utf-8",
                        "try GET /metrics\n".to_string(),
                    ),
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\n{extra}Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(response.as_bytes()).await
            };
            let _ = tokio::time::timeout(ANSWER_TIMEOUT, answer).await;
        });
    }
}

/// How long a client has to send its request head once connected.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// How long rendering and writing an answer may take.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest request head read.
const MAX_HEAD: usize = 8192;

/// Reads up to the end of the request head; `None` if the client closes first or sends more
/// than [`MAX_HEAD`] bytes.
async fn read_head(stream: &mut tokio::net::TcpStream) -> std::io::Result<Option<String>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() > MAX_HEAD {
            return Ok(None);
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(Some(String::from_utf8_lossy(&head).into_owned()))
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// `GET /metrics` or `GET /` (a query string is ignored).
    Scrape,
    /// Another method on those paths.
    MethodNotAllowed,
    /// Any other path.
    NotFound,
}

/// Routes a request by its request line.
fn route(head: &str) -> Route {
    let mut words = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics" | "/") => Route::Scrape,
        (_, "/metrics" | "/") => Route::MethodNotAllowed,
        _ => Route::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_routed_by_method_and_path_without_the_query() {
        let r = |line: &str| route(&format!("{line}\r\nHost: x\r\n\r\n"));
        assert_eq!(r("GET /metrics HTTP/1.1"), Route::Scrape);
        assert_eq!(r("GET / HTTP/1.0"), Route::Scrape);
        assert_eq!(r("GET /metrics?x HTTP/1.1"), Route::Scrape);
        assert_eq!(r("GET /metrics?a=1&b=2 HTTP/1.1"), Route::Scrape);
        assert_eq!(r("POST /metrics HTTP/1.1"), Route::MethodNotAllowed);
        assert_eq!(r("PUT /?x HTTP/1.1"), Route::MethodNotAllowed);
        assert_eq!(r("GET /metricsx HTTP/1.1"), Route::NotFound);
        assert_eq!(r("GET /nope?metrics HTTP/1.1"), Route::NotFound);
        assert_eq!(r(""), Route::NotFound);
    }

    #[tokio::test]
    async fn a_scrape_over_loopback_gets_the_supervisors_rendering() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (scrapes_tx, mut scrapes) = mpsc::channel::<Scrape>(4);
        tokio::spawn(serve(listener, scrapes_tx));
        // The supervisor's side: one rendering per scrape.
        tokio::spawn(async move {
            while let Some(reply) = scrapes.recv().await {
                let _ = reply.send(Ok("herd_up 1\n# EOF\n".to_string()));
            }
        });
        let get = |request: &'static str| async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.unwrap();
            answer
        };
        let answer = tokio::time::timeout(ANSWER_TIMEOUT, async {
            (
                get("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await,
                get("GET /nope HTTP/1.1\r\n\r\n").await,
            )
        });
        let (scraped, missing) = answer.await.expect("answers in time");
        assert!(scraped.starts_with("HTTP/1.1 200 OK\r\n"), "{scraped}");
        assert!(scraped.contains(CONTENT_TYPE), "{scraped}");
        assert!(scraped.ends_with("\r\n\r\nherd_up 1\n# EOF\n"), "{scraped}");
        assert!(
            missing.starts_with("HTTP/1.1 404 Not Found\r\n"),
            "{missing}"
        );
    }

    #[test]
    fn scrapes_get_the_right_status_and_type() {
        let (status, kind, body) = scrape_response(Some(Ok("x 1\n# EOF\n".to_string())));
        assert_eq!((status, kind), ("200 OK", CONTENT_TYPE));
        assert!(body.ends_with("# EOF\n"));
        let (status, kind, _) = scrape_response(Some(Err(std::fmt::Error)));
        assert_eq!(status, "500 Internal Server Error");
        assert!(kind.starts_with("text/plain"));
        let (status, _, body) = scrape_response(None);
        assert_eq!(
            (status, body.as_str()),
            ("503 Service Unavailable", "herd is stopping\n")
        );
    }
}
