#!/usr/bin/env python3
"""A test worker: answers HTTP requests with JSON describing itself.

GET /            {"pid": ..., "slot": ..., "argv": [...]}
GET /sleep/MS    the same after MS milliseconds; prints "probe PID busy" to stderr first, so a
                 test knows the request is in flight without sleeping itself

Takes its socket like examples/hello.py (whose loader it reuses) and, like it, finishes the
request in flight on SIGTERM.
"""

import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "examples"))
from hello import listen_sockets, read_request  # noqa: E402


def main():
    sockets = listen_sockets()
    listener = next(iter(sockets.values()))
    state = {"busy": False, "stopping": False}

    def on_stop(signum, frame):
        state["stopping"] = True
        if not state["busy"]:
            sys.exit(0)

    signal.signal(signal.SIGTERM, on_stop)
    while not state["stopping"]:
        conn, _ = listener.accept()
        state["busy"] = True
        try:
            path = (read_request(conn).split(" ") + ["", ""])[1]
            if path.startswith("/sleep/"):
                print(f"probe {os.getpid()} busy", file=sys.stderr, flush=True)
                time.sleep(int(path[len("/sleep/"):]) / 1000)
            body = json.dumps({
                "pid": os.getpid(),
                "slot": os.environ.get("HERD_WORKER"),
                "argv": sys.argv[1:],
            }).encode()
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        except OSError:
            pass
        finally:
            conn.close()
            state["busy"] = False


if __name__ == "__main__":
    main()
