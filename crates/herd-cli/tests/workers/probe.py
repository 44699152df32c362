#!/usr/bin/env python3
"""A test worker: answers HTTP requests with JSON describing itself.

GET /            {"pid": ..., "slot": ..., "generation": ..., "argv": [...]}
GET /sleep/MS    the same after MS milliseconds; prints "probe PID busy" to stderr first, so a
                 test knows the request is in flight without sleeping itself

Environment: PROBE_READY=0 never sends READY=1 (a worker that never becomes ready);
PROBE_EXIT=N exits with status N at once; PROBE_WATCHDOG=0 never pings the watchdog;
PROBE_DIE_AFTER_READY=SECONDS exits with status 1 that long after sending READY=1.
Otherwise it behaves like examples/hello.py, whose socket handling and stop logic it reuses.
"""

import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "examples"))
from hello import listen_sockets, notify, serve  # noqa: E402


def watchdog_pinger():
    interval = int(os.environ["WATCHDOG_USEC"]) / 1e6 / 3
    while True:
        notify("WATCHDOG=1")
        time.sleep(interval)


def main():
    if "PROBE_EXIT" in os.environ:
        sys.exit(int(os.environ["PROBE_EXIT"]))
    sockets = listen_sockets()
    listener = next(iter(sockets.values()))

    def respond(conn, request_line):
        path = (request_line.split(" ") + ["", ""])[1]
        if path.startswith("/sleep/"):
            os.write(2, f"probe {os.getpid()} busy\n".encode())
            time.sleep(int(path[len("/sleep/"):]) / 1000)
        body = json.dumps({
            "pid": os.getpid(),
            "slot": os.environ.get("HERD_WORKER"),
            "generation": os.environ.get("HERD_GENERATION"),
            "argv": sys.argv[1:],
        }).encode()
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    if os.environ.get("PROBE_READY") != "0":
        notify("STATUS=serving\nREADY=1")
    if "PROBE_DIE_AFTER_READY" in os.environ:
        threading.Timer(float(os.environ["PROBE_DIE_AFTER_READY"]), os._exit, [1]).start()
    if "WATCHDOG_USEC" in os.environ and os.environ.get("PROBE_WATCHDOG") != "0":
        threading.Thread(target=watchdog_pinger, daemon=True).start()
    serve(listener, respond)


if __name__ == "__main__":
    main()
