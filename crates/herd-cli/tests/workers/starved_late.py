#!/usr/bin/env python3
"""A test worker whose start-up is starved late: the first one (no file FIRST in the directory
given, which it creates) takes 1.2 s to start, sleeping, so that herd's warm-up budget (twice
the slowest start-up at full priority) is long. Every later one prints 'late PID' on stderr
once it runs its own code, sleeps 1 s (a test saturates the CPU meanwhile), then burns CPU
until herd has moved it to a nice value and raised it back from there (within 30 s), and only
then sends READY=1; it answers with its pid. With `--own-nice N` a later one first adds N to
its own nice value, as `nice` does, and burns only until herd has moved it out of
`SCHED_IDLE`."""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "examples"))
from hello import listen_sockets, notify, serve  # noqa: E402


def burn_until(done):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not done():
        end = time.process_time() + 0.01
        while time.process_time() < end:
            pass


def main():
    listener = next(iter(listen_sockets().values()))
    first = os.path.join(sys.argv[1], "FIRST")
    own_nice = int(sys.argv[3]) if sys.argv[2:3] == ["--own-nice"] else None
    if not os.path.exists(first):
        open(first, "w").close()
        time.sleep(1.2)
    elif own_nice is not None:
        os.nice(own_nice)
        print("late %d" % os.getpid(), file=sys.stderr, flush=True)
        time.sleep(1)
        burn_until(lambda: os.sched_getscheduler(0) != os.SCHED_IDLE)
    else:
        print("late %d" % os.getpid(), file=sys.stderr, flush=True)
        time.sleep(1)
        serving = os.getpriority(os.PRIO_PROCESS, os.getppid())  # herd's
        seen = []

        def raised():
            nice = os.getpriority(os.PRIO_PROCESS, 0)
            seen.append(nice)
            return max(seen) > serving and nice == serving

        burn_until(raised)
    body = str(os.getpid()).encode()

    def respond(conn, request_line):
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    notify("READY=1")
    serve(listener, respond)


if __name__ == "__main__":
    main()
