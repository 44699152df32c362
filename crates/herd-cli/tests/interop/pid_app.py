"""WSGI and ASGI apps for the interop tests: each answers "<server> pid <pid>", with the server
named by APP_MARKER, so a test sees which process served it."""
import os

MARKER = os.environ.get("APP_MARKER", "python")


def _body():
    return f"{MARKER} pid {os.getpid()}\n".encode()


def wsgi(environ, start_response):
    body = _body()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


async def asgi(scope, receive, send):
    if scope["type"] != "http":
        return
    body = _body()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
