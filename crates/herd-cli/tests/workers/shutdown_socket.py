#!/usr/bin/env python3
"""A test worker that behaves like Sanic's multi-process mode on exit: it calls shutdown() on the
shared listening socket, which stops it for every process that holds it, then exits.

argv[1] is a marker file: the first worker to create it reports READY=1, shuts the socket down
and exits 0; every other worker is examples/hello.py, silenced (and crashes, like a real
server, when accept() fails on the shut-down socket)."""

import os
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "examples"))
import hello  # noqa: E402


def main():
    try:
        os.close(os.open(sys.argv[1], os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        # Their complaints about the dead socket would interleave with herd's log lines on the
        # shared stderr, which the test reads.
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
        hello.main()
        return
    hello.notify("READY=1")
    listener = socket.socket(fileno=os.dup(3))
    listener.shutdown(socket.SHUT_RDWR)
    print(f"shutdown_socket {os.getpid()} shut the socket down", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
