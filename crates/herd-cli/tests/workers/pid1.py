#!/usr/bin/env python3
"""A hello.py worker for herd as a container's PID 1. `GET /orphans` double-forks three
grandchildren that exit at once (orphans that only PID 1 can reap; one in a session of its
own, two in the worker's process group) and answers their pids;
`GET /daemon` leaves one that runs until it is stopped, in a session of its own; `GET /slow`
says "slow started" on stderr and answers after a second (a request in flight when herd is
asked to stop)."""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..", "examples"))
from hello import listen_sockets, notify, serve  # noqa: E402


def orphan(then, session):
    """Starts a grandchild that runs `then` after its parent exited, in a session of its own if
    `session`; returns its pid."""
    read, write = os.pipe()
    middle = os.fork()
    if middle == 0:
        os.close(read)
        if os.fork() == 0:
            if session:
                os.setsid()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the worker's handler
            os.write(write, b"%d\n" % os.getpid())
            os.close(write)
            os.closerange(3, 65536)  # the client's connection, the listening socket
            then()
            os._exit(0)
        os._exit(0)
    os.close(write)
    os.waitpid(middle, 0)
    with os.fdopen(read) as pipe:
        return int(pipe.readline())


def respond(conn, request_line):
    path = request_line.split(" ")[1] if " " in request_line else "/"
    if path == "/orphans":
        body = " ".join(str(orphan(lambda: None, session=i == 0)) for i in range(3))
    elif path == "/daemon":
        body = str(orphan(lambda: time.sleep(1000), session=True))
    elif path == "/slow":
        os.write(2, b"slow started\n")
        time.sleep(1)
        body = "slow done"
    else:
        body = "hello"
    data = body.encode()
    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(data), data))


notify("READY=1")
serve(next(iter(listen_sockets().values())), respond)
