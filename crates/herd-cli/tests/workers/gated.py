#!/usr/bin/env python3
"""A test worker that starts a thread and a child process, prints their pids on stderr
('gated {json}'), and sends READY=1 only once a test has written to its FIFO (named in that
line), so that the test can look at them before and after readiness. Arguments: the directory
for the FIFO, then optionally --batch-thread (the thread moves itself to SCHED_BATCH first)
and --orphan (it also leaves a process behind, a `sleep` whose shell exits at once, so that
the kernel re-parents it to herd: its pid and scheduling policy at birth are in the line)."""

import json
import os
import subprocess
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "examples"))
from hello import listen_sockets, notify, serve  # noqa: E402


def main():
    directory = sys.argv[1]
    batch = "--batch-thread" in sys.argv[2:]
    orphan = "--orphan" in sys.argv[2:]
    listener = next(iter(listen_sockets().values()))
    started = threading.Event()
    tid = []

    def idle():
        if batch:
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
        tid.append(threading.get_native_id())
        started.set()
        threading.Event().wait()

    threading.Thread(target=idle, daemon=True).start()
    started.wait()
    # Reads until herd stops the process group.
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    gate = os.path.join(directory, "gate.%d" % os.getpid())
    os.mkfifo(gate)
    facts = {"pid": os.getpid(), "thread": tid[0], "child": child.pid, "gate": gate}
    if orphan:
        left = subprocess.run(["sh", "-c", "sleep 600 </dev/null >/dev/null 2>&1 & echo $!"],
                              capture_output=True, text=True, check=True)
        facts["orphan"] = int(left.stdout)
        facts["orphan_policy"] = os.sched_getscheduler(facts["orphan"])
    print("gated " + json.dumps(facts), file=sys.stderr, flush=True)
    with open(gate, "rb") as f:
        f.read()

    def respond(conn, request_line):
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")

    notify("READY=1")
    serve(listener, respond)


if __name__ == "__main__":
    main()
