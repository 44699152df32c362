#!/usr/bin/env python3
"""A test worker that behaves like Sanic's multi-process mode: it calls shutdown() on the shared
listening socket, which stops it for every process that holds it, then exits.

shutdown_socket.py MARKER: the first worker to create the file MARKER reports READY=1, shuts
the socket down and exits 0; every other worker is examples/hello.py, silenced (and crashes,
like a real server, when accept() fails on the shut-down socket).

shutdown_socket.py --stay MARKER: as with MARKER, but the first worker stays alive and shuts
the socket down again on each SIGUSR1 (a worker that keeps calling shutdown() while it runs;
the test says when). Each shutdown is reported on stderr: "shutdown_socket PID shut the
socket down".

shutdown_socket.py --on-stop: serves like hello.py (answering with its pid), and on SIGTERM
shuts the socket down and exits 0; a worker whose accept() fails crashes."""

import os
import signal
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "examples"))
import hello  # noqa: E402


def shut_down():
    socket.socket(fileno=os.dup(3)).shutdown(socket.SHUT_RDWR)
    os.write(2, f"shutdown_socket {os.getpid()} shut the socket down\n".encode())


def on_stop():
    listener = hello.pick_listener(hello.listen_sockets())
    body = f"pid {os.getpid()}\n".encode()
    response = (b"HTTP/1.1 200 OK\r\nConnection: close\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)

    def stop(signum, frame):
        try:
            shut_down()
        finally:
            os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    hello.notify("READY=1")
    while True:
        try:
            conn, _ = listener.accept()
        except OSError as e:
            sys.exit(f"shutdown_socket {os.getpid()}: accept failed: {e}")
        try:
            hello.read_request(conn)
            conn.sendall(response)
        except OSError:
            pass
        finally:
            conn.close()


def main():
    if sys.argv[1] == "--on-stop":
        on_stop()
        return
    stay = sys.argv[1] == "--stay"
    marker = sys.argv[2] if stay else sys.argv[1]
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        # Their complaints about the dead socket would interleave with herd's log lines on the
        # shared stderr, which the test reads.
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
        hello.main()
        return
    if stay:
        signal.signal(signal.SIGUSR1, lambda signum, frame: shut_down())
    hello.notify("READY=1")
    shut_down()
    while stay:
        signal.pause()


if __name__ == "__main__":
    main()
