#!/usr/bin/env python3
"""A test worker whose start-up needs CPU: it burns argv[1] seconds of CPU time before it
sends READY=1, as a Python or Node import does; then it answers with its pid."""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "examples"))
from hello import listen_sockets, notify, serve  # noqa: E402


def main():
    listener = next(iter(listen_sockets().values()))
    end = time.process_time() + float(sys.argv[1])
    while time.process_time() < end:
        pass
    body = str(os.getpid()).encode()

    def respond(conn, request_line):
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    notify("READY=1")
    serve(listener, respond)


if __name__ == "__main__":
    main()
