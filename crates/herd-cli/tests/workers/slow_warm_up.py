#!/usr/bin/env python3
"""A test worker whose start-up cannot finish at nice 19, as a starved one on a saturated
machine: it sends READY=1 only once its nice value is below 19 (within 30 s), and answers
with its nice value at start-up and when it became ready. `--start-delay SECONDS` makes every
start-up that long first (so that herd's warm-up budget, twice the slowest start-up at full
priority, is long)."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "examples"))
from hello import listen_sockets, serve  # noqa: E402


def main():
    at_start = os.getpriority(os.PRIO_PROCESS, 0)
    if sys.argv[1:2] == ["--start-delay"]:
        time.sleep(float(sys.argv[2]))
    listener = next(iter(listen_sockets().values()))
    deadline = time.monotonic() + 30
    while os.getpriority(os.PRIO_PROCESS, 0) == 19 and time.monotonic() < deadline:
        time.sleep(0.02)
    at_ready = os.getpriority(os.PRIO_PROCESS, 0)
    body = json.dumps({"nice_at_start": at_start, "nice_at_ready": at_ready}).encode()

    def respond(conn, request_line):
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    serve(listener, respond, ready=True)


if __name__ == "__main__":
    main()
