#!/usr/bin/env python3
"""A test worker that, when started at nice 19, moves itself into the process group of a
child it started (so that it no longer leads a group of its own), then says READY=1; it
answers with its pid and process group."""

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "examples"))
from hello import listen_sockets, notify, serve  # noqa: E402


def main():
    listener = next(iter(listen_sockets().values()))
    if os.getpriority(os.PRIO_PROCESS, 0) == 19:
        # Reads until the worker is gone; leads a group of its own, which the worker joins.
        child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                                 stdin=subprocess.PIPE, process_group=0)
        os.setpgid(0, child.pid)
    body = json.dumps({"pid": os.getpid(), "pgid": os.getpgid(0)}).encode()

    def respond(conn, request_line):
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    notify("READY=1")
    serve(listener, respond)


if __name__ == "__main__":
    main()
