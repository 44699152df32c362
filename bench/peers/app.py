"""The peer benchmark's Python app: the WSGI callable `application` that gunicorn, uWSGI and
circus serve, and, run as a program, the same app on a stdlib server (examples/hello.py's
accept loop: one process, one request at a time) on a socket it inherits: herd's
(LISTEN_FDS, then READY=1 on NOTIFY_SOCKET), or circus's (`--fd N`)."""
import os
import sys


def application(environ, start_response):
    body = f"python pid {os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def respond(conn, request_line):
    """Serves one request on `conn` with `application`; the connection then closes."""
    method, _, rest = request_line.partition(" ")
    path = rest.split(" ", 1)[0].split("?", 1)[0] or "/"
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "SERVER_PROTOCOL": "HTTP/1.1",
               "wsgi.input": None, "wsgi.url_scheme": "http"}
    head = []

    def start_response(status, headers):
        head.append(f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers))

    body = b"".join(application(environ, start_response))
    conn.sendall(head[0].encode("latin-1") + b"Connection: close\r\n\r\n" + body)


def main():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples"))
    import hello
    import socket

    if sys.argv[1:2] == ["--fd"]:
        listener = socket.socket(fileno=int(sys.argv[2]))
    else:
        listener = hello.pick_listener(hello.listen_sockets() or sys.exit(
            "app.py: no socket inherited: run under herd, or pass --fd N"))
    hello.serve(listener, respond, ready=True)


if __name__ == "__main__":
    main()
