#!/usr/bin/env python3
"""Benchmark (issue 16): what `--worker-output prefix` costs against `inherit`. One worker
(`herd-bench-worker`) under herd, herd's stdout a pipe this script reads as fast as it can:

- flood: the worker writes 100-byte lines to stdout as fast as it can (a thread of its own)
  while it serves requests: lines per second that reach herd's stdout, lines lost, and the
  worker's request rate;
- a line per request: the worker writes an access-log line per request: its request rate.

Each setup side by side with the other mode, alternating round by round; medians over the
rounds. Usage:

    python3 bench/output.py [--seconds 3] [--rounds 3]   (bench/run builds first)
"""
import argparse
import os
import statistics
import subprocess
import threading
import time

from common import HERD, WORKER, bars, figure, loadgen, machine, need_build, pinned, report, wait_until
from herdctl import status


class Counted:
    """herd with one worker and `--worker-output MODE`, its stdout read and counted."""

    def __init__(self, mode, worker_args):
        self.control = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"herd-bench-output-{os.getpid()}-{mode}.sock")
        args = [HERD, "--log-level", "warn", "--control", self.control, "run", "-w", "1",
                "--ready", "notify", "--worker-output", mode, "-b", "http=127.0.0.1:0", "--",
                *pinned(0, [WORKER, *worker_args])]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        self.lines = 0
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()
        wait_until("1 ready worker", lambda: status(self.control)["ready"] == 1)
        self.addr = status(self.control)["sockets"][0]["address"]

    def read(self):
        fd = self.proc.stdout.fileno()
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return
            with self.lock:
                self.lines += chunk.count(b"\n")

    def counted(self):
        with self.lock:
            return self.lines

    def lost(self):
        return status(self.control).get("worker_output_lines_dropped", 0)

    def stop(self):
        subprocess.run([HERD, "--control", self.control, "stop"], capture_output=True)
        self.proc.wait(timeout=60)


def measure(mode, worker_args, seconds):
    """(requests/s, lines/s reaching herd's stdout, lines lost) over `seconds` of load."""
    herd = Counted(mode, worker_args)
    try:
        time.sleep(0.5)  # the flood reaches its pace
        lines0, lost0 = herd.counted(), herd.lost()
        r = loadgen(herd.addr, 0, seconds, "--concurrency", 4, cpu=1)
        lines, lost = herd.counted() - lines0, herd.lost() - lost0
        return r["ok"] / r["seconds"], lines / r["seconds"], lost
    finally:
        herd.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--report", default=report("output"))
    args = parser.parse_args()
    need_build()
    loads = [("flood", ["--flood"]), ("a line per request", ["--log-requests"])]
    modes = ["inherit", "prefix"]
    got = {}
    for round_ in range(args.rounds):
        for load, worker_args in loads:
            for mode in (modes if round_ % 2 == 0 else modes[::-1]):
                got.setdefault((load, mode), []).append(measure(mode, worker_args, args.seconds))

    def med(load, mode, i):
        return statistics.median(v[i] for v in got[(load, mode)])

    def ratio(load, i):
        pairs = zip(got[(load, "prefix")], got[(load, "inherit")])
        values = [p[i] / b[i] for p, b in pairs if b[i]]
        return statistics.median(values) if values else None

    rows = ["| load | mode | requests/s | lines/s reaching herd's stdout | lines lost per run |",
            "|---|---|---|---|---|"]
    for load, _ in loads:
        for mode in modes:
            rows.append(f"| {load} | {mode} | {med(load, mode, 0):.0f} | {med(load, mode, 1):.0f} | "
                        f"{med(load, mode, 2):.0f} |")
    table = "\n".join(rows)
    flood_req, flood_lines = ratio("flood", 0), ratio("flood", 1)
    per_request = ratio("a line per request", 0)
    summary = (f"prefix / inherit, medians of paired rounds: flood requests/s **{flood_req:.2f}x**, "
               f"flood lines/s **{flood_lines:.2f}x**; a line per request, requests/s "
               f"**{per_request:.2f}x**.")
    print(table, "", summary, sep="\n")
    chart = bars([(f"{load} (req/s)", [(mode, round(med(load, mode, 0))) for mode in modes])
                  for load, _ in loads], "req/s")
    svg = figure("output")
    with open(svg, "w") as f:
        f.write(chart)
    with open(args.report, "w") as f:
        f.write(f"""# Benchmark: worker output, `inherit` against `prefix`

Command: `python3 bench/output.py --seconds {args.seconds:g} --rounds {args.rounds}` (or `bench/run output`)

Machine: {machine()}.

Method: one `herd-bench-worker` (on CPU 0) under `herd run -w 1 --worker-output MODE`, herd's
stdout a pipe this script reads as fast as it can and counts lines in; `herd-loadgen` (on CPU 1)
drives it closed loop with 4 clients, a new connection per request, for {args.seconds:g} s. In
**flood** the worker also writes 100-byte lines to stdout from a thread of its own, as fast as
it can; with `inherit` they go straight to the pipe, with `prefix` through herd, which reads
them, tags each with `[worker 0 pid N gen 1]` and writes them out (dropping what its 4 MiB
queue cannot hold, counted). In **a line per request** the worker writes one access-log line
per request. Both modes run back to back in each of {args.rounds} rounds, in turn first.

{table}

{summary}

![requests per second by mode](output.svg)

Reading it: with `prefix` every line is read by herd and written again, so the machine's 2 cores
do about twice the copying. A worker that logs a line per request does not notice. A flooding
worker writes as fast as the slowest reader in its path: with `inherit` the pipe's reader, with
`prefix` herd's reader thread, which cuts and tags each line (its lines per second above): the
worker then waits on its pipe as it would for any reader, while its request rate stays close.
Lines that herd's own stdout cannot take in time are dropped and counted; herd's output never
makes the worker wait.
""")
    print(f"\nwrote {args.report} and {svg}")


if __name__ == "__main__":
    main()
