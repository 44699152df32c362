#!/usr/bin/env python3
"""A CPU-bound worker for the autoscaling benchmark: about 1 ms of CPU work per request."""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
from hello import listen_sockets, notify, serve  # noqa: E402

WORK = float(os.environ.get("WORK_MS", "1")) / 1000


def respond(conn, request_line):
    end = time.thread_time() + WORK
    while time.thread_time() < end:
        pass
    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n")


notify("READY=1")
serve(next(iter(listen_sockets().values())), respond)
