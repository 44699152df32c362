#!/usr/bin/env python3
"""A test worker that answers with its nice value at start-up, and the pids of a thread and a
child process it started before READY=1, so that a test can read their nice values later.
With --child-nice N the child lowers its own priority by N before READY=1."""

import json
import os
import subprocess
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "examples"))
from hello import listen_sockets, serve  # noqa: E402


def main():
    at_start = os.getpriority(os.PRIO_PROCESS, 0)
    listener = next(iter(listen_sockets().values()))
    started = threading.Event()
    tid = []

    def idle():
        tid.append(threading.get_native_id())
        started.set()
        threading.Event().wait()

    threading.Thread(target=idle, daemon=True).start()
    started.wait()
    # Reads until herd stops the process group; with --child-nice N it first lowers its own
    # priority by N, and says so before this worker is ready.
    more = int(sys.argv[sys.argv.index("--child-nice") + 1]) if "--child-nice" in sys.argv else 0
    code = "import os, sys; os.nice(%d); print('niced', flush=True); sys.stdin.read()" % more
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE)
    child.stdout.readline()
    body = json.dumps({"nice_at_start": at_start, "thread": tid[0], "child": child.pid}).encode()

    def respond(conn, request_line):
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    serve(listener, respond, ready=True)


if __name__ == "__main__":
    main()
