#!/usr/bin/env python3
"""Where a reload's throughput goes at saturation (issue 19), per worker kind of the peer
benchmark, side by side: the CPU one worker's start costs (its whole process tree, until it
has answered one request) and its stop (from herd's stop signal until its tree has exited),
the CPU per request at saturation with 4 workers accepting and
with 6 (during an upgrade old and new workers accept side by side for `--min-ready`), what a
new worker's first requests cost beyond what the same requests cost it once warm (a JIT's
warm-up, caches; `warm-up ms`, and `first µs/req` against `warm µs/req`), and
one upgrade at saturation: its window and throughput share (bench/peers_stats.py's `cut`).
It prints what the start-ups alone would cost: 4 starts' CPU over the window's CPU (the
closed loop's, load generator included), and the share of the machine other work took
(bench/peers_load.py), since the figures at saturation mean little on a busy machine. Run it
under the bench lock. Usage:

    python3 bench/reload_cost.py [--reps 2] [py gunicorn gunicorn-plain node]
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import tempfile
import time

import socket
from common import LOADGEN, Herd, need_build
from peers import load_average, setup
from peers_load import OtherWork
from peers_stats import cut, read_timeline
from peers_systems import children, python, worker_kinds

BIND = "127.0.0.1:0,nonblocking"


def on_cpu(pid):
    """CPU seconds the running threads of `pid` have used, in nanoseconds' precision
    (/proc/PID/task/TID/schedstat; utime's 10 ms ticks are too coarse for one start)."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
    except OSError:  # it exited meanwhile
        pass
    return total / 1e9


def tree_cpu(pid):
    """CPU seconds of `pid` and its descendants that are still running."""
    return on_cpu(pid) + sum(tree_cpu(c) for c in children(pid))


def answer(address):
    """One request to `address`, its answer read to the end."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
        while conn.recv(4096):
            pass


def start_cpu(command):
    """CPU seconds one worker's tree took to start and answer one request."""
    with Herd(command, 1, BIND) as herd:
        answer(herd.address())
        (worker,) = children(herd.proc.pid)
        cpu = tree_cpu(worker)
        herd.stop()
    return cpu


def tree(pid):
    """`pid` and its descendants."""
    return [pid] + [d for c in children(pid) for d in tree(c)]


def stop_cpu(command):
    """CPU seconds one idle worker's tree takes from herd's stop signal to its exit, at least:
    each process's CPU as last read, every half millisecond, before it was gone (once reaped,
    a process's CPU can no longer be read)."""
    with Herd(command, 1, BIND) as herd:
        answer(herd.address())
        (worker,) = children(herd.proc.pid)
        pids = tree(worker)
        last = {pid: on_cpu(pid) for pid in pids}
        first = dict(last)
        herd.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while pids and time.monotonic() < deadline:
            for pid in list(pids):
                cpu = on_cpu(pid) if os.path.exists(f"/proc/{pid}/stat") else 0
                if cpu:
                    last[pid] = cpu
                else:
                    pids.remove(pid)
            time.sleep(0.0005)
        herd.proc.wait(timeout=60)
    return sum(last.values()) - sum(first.values())


def warm_up_cpu(command, segments=12, seconds=0.5):
    """(extra CPU seconds of a new worker's first requests over their cost once it is warm, µs
    per request of its first segment, µs per request warm): one worker under a closed loop of
    4 connections, `segments` runs of `seconds` each; warm is the last third's rate."""
    rows = []
    with Herd(command, 1, BIND) as herd:
        address = herd.address()
        (worker,) = children(herd.proc.pid)
        before = tree_cpu(worker)
        for _ in range(segments):
            out = subprocess.run([LOADGEN, address, "0", str(seconds), "--concurrency", "4"],
                                 capture_output=True, text=True, check=True).stdout
            now = tree_cpu(worker)
            rows.append((json.loads(out)["ok"], now - before))
            before = now
        herd.stop()
    last = rows[-(segments // 3):]
    warm = sum(cpu for _, cpu in last) / max(1, sum(n for n, _ in last))
    extra = sum(cpu - n * warm for n, cpu in rows)  # signed: noise in either direction cancels
    first_n, first_cpu = rows[0]
    return extra, 1e6 * first_cpu / max(1, first_n), 1e6 * warm


def loop(address, seconds_or_upgrade, herd):
    """A closed loop of 32 connections; returns (records, windows, cores of the workers and the
    load generator while steady). `seconds_or_upgrade`: a steady measurement of that many seconds,
    or None for one upgrade after 1.5 s."""
    timeline = os.path.join(tempfile.mkdtemp(prefix="herd-cost-"), "timeline.csv")
    load = subprocess.Popen([LOADGEN, address, "0", "3600", "--until-eof", "--timeout", "5",
                             "--timeline", timeline, "--concurrency", "32"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    cores, windows = None, []
    if seconds_or_upgrade:
        t0, w0, l0 = time.monotonic(), tree_cpu(herd.proc.pid), on_cpu(load.pid)
        time.sleep(seconds_or_upgrade)
        took = time.monotonic() - t0
        cores = ((tree_cpu(herd.proc.pid) - w0) / took, (on_cpu(load.pid) - l0) / took)
    else:
        time.sleep(1.0)
        begin = time.time()
        herd.ctl("upgrade")
        windows.append((begin, time.time()))
        time.sleep(0.5)
    out, _ = load.communicate(timeout=60)
    start = json.loads(out)["start_unix_us"] / 1e6
    records = read_timeline(timeline)
    os.unlink(timeline)
    return records, [((b - start) * 1e6, (e - start) * 1e6) for b, e in windows], cores


def steady(command, workers):
    """(requests/s, CPU µs per request of the workers, of the load generator) at saturation,
    once the workers are warm."""
    with Herd(command, workers, BIND) as herd:
        # Warm first: a new Node worker's first few thousand requests cost twice what later
        # ones do (V8 compiles meanwhile; see warm_up_cpu).
        subprocess.run([LOADGEN, herd.address(), "0", "3", "--concurrency", "32"], capture_output=True, check=True)
        records, _, (worker_cores, load_cores) = loop(herd.address(), 2.0, herd)
        herd.stop()
    rate = cut(records, [])["steady_rps"]
    return rate, 1e6 * worker_cores / rate, 1e6 * load_cores / rate


def upgrade(command):
    """(throughput share, window seconds) of one upgrade at saturation."""
    with Herd(command, 4, BIND) as herd:
        records, windows, _ = loop(herd.address(), None, herd)
        herd.stop()
    return cut(records, windows)["share"], (windows[0][1] - windows[0][0]) / 1e6


def one(command):
    rate4, w4, l4 = steady(command, 4)
    _, w6, _ = steady(command, 6)
    share, window = upgrade(command)
    start = statistics.median(start_cpu(command) for _ in range(3))
    stop = statistics.median(stop_cpu(command) for _ in range(3))
    warm_up, first, warm = (statistics.median(v) for v in zip(*(warm_up_cpu(command) for _ in range(3))))
    loop_cores = (w4 + l4) * rate4 / 1e6  # what the closed loop keeps busy, load generator included
    return {"start ms": 1e3 * start, "stop ms": 1e3 * stop, "req/s": rate4, "worker µs/req": w4, "load µs/req": l4,
            "6 workers: worker µs/req": w6, "share": share, "window s": window,
            "4 starts / window CPU": 4 * start / (window * loop_cores),
            "warm-up ms": 1e3 * warm_up, "first µs/req": first, "warm µs/req": warm,
            "4 warm-ups / window CPU": 4 * warm_up / (window * loop_cores)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("kinds", nargs="*", default=["py", "gunicorn", "gunicorn-plain", "node"])
    args = parser.parse_args()
    need_build()
    kinds = worker_kinds(python(setup()))
    results, loads = {}, [load_average()]
    for rep in range(args.reps):
        shift = rep % len(args.kinds)
        for kind in args.kinds[shift:] + args.kinds[:shift]:
            others = OtherWork()
            got = one(kinds[kind])
            got["others %"] = 100 * others.stop()
            results.setdefault(kind, []).append(got)
            loads.append(load_average())
    print(f"load average (1 min) over the run: {min(loads):.1f} to {max(loads):.1f}; {time.strftime('%H:%M:%S')}")
    for kind in args.kinds:
        got = results[kind]
        cells = [f"{key} {statistics.median(g[key] for g in got):.2f} "
                 f"({min(g[key] for g in got):.2f}-{max(g[key] for g in got):.2f})" for key in got[0]]
        print(f"{kind}: " + ", ".join(cells))


if __name__ == "__main__":
    main()
