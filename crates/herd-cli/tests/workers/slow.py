#!/usr/bin/env python3
"""A hello.py worker that takes SLOW_MS milliseconds (default 50) over every request, so that
connections queue up behind it."""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..", "examples"))
from hello import listen_sockets, notify, serve  # noqa: E402

DELAY = float(os.environ.get("SLOW_MS", "50")) / 1000
BODY = f"slow pid {os.getpid()}\n".encode()
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(BODY)).encode()
            + b"\r\nConnection: close\r\n\r\n" + BODY)


def respond(conn, request_line):
    time.sleep(DELAY)
    conn.sendall(RESPONSE)


notify("READY=1")
serve(next(iter(listen_sockets().values())), respond)
