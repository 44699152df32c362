#!/usr/bin/env python3
"""A test worker that behaves like Sanic's multi-process mode: it calls shutdown() on the shared
listening socket, which stops it for every process that holds it, then exits.

shutdown_socket.py MARKER: the first worker to create the file MARKER reports READY=1, shuts
the socket down and exits 0; every other worker is examples/hello.py, silenced (and crashes,
like a real server, when accept() fails on the shut-down socket).

shutdown_socket.py --stay MARKER: as with MARKER, but the first worker stays alive: it shuts
the socket down 4 times, each time once herd has made it listen again and half a second has
passed, then sleeps (a worker that keeps calling shutdown() while it runs).

shutdown_socket.py --on-stop: serves like hello.py (answering with its pid), and on SIGTERM
shuts the socket down and exits 0; a worker whose accept() fails crashes."""

import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "examples"))
import hello  # noqa: E402


def shut_down():
    socket.socket(fileno=os.dup(3)).shutdown(socket.SHUT_RDWR)


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


def listening():
    s = socket.socket(fileno=os.dup(3))
    try:
        return s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) != 0
    finally:
        s.close()


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
    hello.notify("READY=1")
    shut_down()
    os.write(2, f"shutdown_socket {os.getpid()} shut the socket down\n".encode())
    if not stay:
        return
    for _ in range(3):
        while not listening():
            time.sleep(0.05)
        time.sleep(0.5)
        shut_down()
    time.sleep(1000)


if __name__ == "__main__":
    main()
