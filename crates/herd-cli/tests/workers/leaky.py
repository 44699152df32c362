#!/usr/bin/env python3
"""A test worker that leaks memory on purpose: it keeps LEAK_KB KiB (default 1024) of touched
memory per request, but no more than LEAK_MB_PER_S MiB a second since its first request (when
set, so that it leaks at that rate under any load), after START_MB MiB (default 0) at start.
Answers "leaky pid N". Reports READY=1, and with ASK_AFTER=N asks herd to recycle it
(HERD_RECYCLE=1) once it has answered N requests (with ASK_AT_START=1, right after READY=1). A
stop (SIGTERM, SIGINT) ends it between two requests, never with a connection accepted and
unanswered: it polls the (shared, non-blocking) listener and checks for a stop before each
accept."""

import os
import select
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "examples"))
from hello import listen_sockets, notify, pick_listener, read_request  # noqa: E402


def main():
    listener = pick_listener(listen_sockets())
    leak = int(os.environ.get("LEAK_KB", "1024")) * 1024
    kept = [b"s" * (int(os.environ.get("START_MB", "0")) << 20)]
    body = f"leaky pid {os.getpid()}\n".encode()
    response = (b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)) + body

    rate = float(os.environ.get("LEAK_MB_PER_S", "0")) * (1 << 20)
    leaked = {"bytes": 0, "since": None}
    ask_after = int(os.environ.get("ASK_AFTER", "0"))
    answered = [0]

    def respond(conn, request_line):
        answered[0] += 1
        if answered[0] == ask_after:
            notify("HERD_RECYCLE=1")
        n = leak
        if rate:
            since = leaked["since"] = leaked["since"] or time.monotonic()
            n = max(0, min(leak, int(rate * (time.monotonic() - since)) - leaked["bytes"]))
        kept.append(b"x" * n)  # written, so resident
        leaked["bytes"] += n
        conn.sendall(response)

    notify("READY=1")
    if os.environ.get("ASK_AT_START") == "1":
        notify("HERD_RECYCLE=1")
    serve(listener, respond)


def serve(listener, respond):
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    listener.setblocking(False)
    while not stopping:
        ready, _, _ = select.select([listener], [], [], 0.05)
        if not ready or stopping:
            continue
        try:
            conn, _ = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            continue  # a sibling took it, or the client gave up
        conn.setblocking(True)
        try:
            respond(conn, read_request(conn))
        except OSError:
            pass
        finally:
            conn.close()


if __name__ == "__main__":
    main()
