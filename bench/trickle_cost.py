#!/usr/bin/env python3
"""What a start-up at a low CPU priority costs a saturated pool (issue 19): herd with 4 workers
of a peer benchmark app under the peer benchmark's saturation (closed loop, 32 connections), and
periods of S seconds alternating: quiet, then beside one CPU-bound process at a priority (a
stand-in for a starting worker that never gets ready: herd's `--starting-nice` trickle runs
one at nice 10, `SCHED_IDLE` before it is starved, herd's own after its budget). Each period
beside it is compared with the quiet periods just before and after it (the machine's rate
drifts by several percent from one second to the next, so neighbours, not a run's average, are
its baseline); the script prints, per priority, the median of those ratios and the share of a
core the process got meanwhile. `none` is the control: a period beside nothing. With `--rate
N`, the load is open loop at N new connections a second instead (the peer benchmark's 2000/s),
and the script prints each period's p99 latency over the quiet periods' around it: what a
start-up costs the serving workers' latency even at `SCHED_IDLE`. Run it under the bench lock,
on a machine that is otherwise quiet. Usage:

    python3 bench/trickle_cost.py [--periods 8] [--seconds 4] [--rate N] [KIND [HERD RUN OPTIONS...]]

KIND is one of bench/upgrade_phases.py's (py, gunicorn, gunicorn-solo, node; default
gunicorn-solo, with `--fork-server` the peer benchmark's fork-server row).
"""
import argparse
import bisect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from common import HERD, LOADGEN, Herd
from peers import setup
from peers_stats import percentile, read_timeline
from peers_systems import forked, python, worker_kinds

# (name, the command prefix that sets the priority); the process itself spins in Python.
BESIDE = [("none", None), ("SCHED_IDLE", ["chrt", "-i", "0"]), ("nice 10", ["nice", "-n", "10"]),
          ("nice 0", [])]
SPIN = "while True:\n    pass\n"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of `pid`, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def beside(prefix, seconds, py):
    """Sleeps `seconds` beside a spinning process started with `prefix` (none if None); returns
    the CPU seconds it got."""
    if prefix is None:
        time.sleep(seconds)
        return 0.0
    spin = subprocess.Popen([*prefix, py, "-c", SPIN])
    try:
        time.sleep(seconds)
        return cpu_seconds(spin.pid)
    finally:
        spin.kill()
        spin.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--periods", type=int, default=8, help="periods beside each priority")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of every period")
    parser.add_argument("--rate", type=int, help="open loop at this many new connections a second")
    parser.add_argument("kind", nargs="?", default="gunicorn-solo")
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="herd run options")
    args = parser.parse_args()
    if args.periods < 1 or args.seconds <= 0.5 or (args.rate is not None and args.rate < 1):
        raise SystemExit("trickle_cost: --periods and --rate must be 1 or more, --seconds more than 0.5")
    py = python(setup())
    kinds = worker_kinds(py)
    if args.kind not in kinds:
        raise SystemExit(f"trickle_cost: unknown KIND {args.kind!r}: one of {', '.join(kinds)}")
    command = forked(kinds[args.kind]) if "--fork-server" in args.extra else kinds[args.kind]
    timeline = os.path.join(tempfile.mkdtemp(prefix="herd-trickle-"), "timeline.csv")
    periods = []  # (name or "quiet", begin, end, CPU seconds of the process beside)
    with Herd(command, 4, bind="127.0.0.1:0,nonblocking", extra=args.extra) as herd:
        shape = ([str(args.rate), "3600", "--threads", "256"] if args.rate else
                 ["0", "3600", "--concurrency", "32"])
        load = subprocess.Popen([LOADGEN, herd.address(), *shape, "--until-eof", "--timeout", "5",
                                 "--timeline", timeline], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True)
        try:
            time.sleep(1)  # the load's ramp
            for i in range(args.periods):
                for name, prefix in BESIDE[i % len(BESIDE):] + BESIDE[:i % len(BESIDE)]:
                    begin = time.time()
                    time.sleep(args.seconds)
                    periods.append(("quiet", begin, time.time(), 0.0))
                    begin = time.time()
                    cpu = beside(prefix, args.seconds, py)
                    periods.append((name, begin, time.time(), cpu))
            begin = time.time()
            time.sleep(args.seconds)
            periods.append(("quiet", begin, time.time(), 0.0))
        finally:
            out, _ = load.communicate(timeout=60)
    start = json.loads(out)["start_unix_us"] / 1e6
    records = read_timeline(timeline)
    os.remove(timeline)
    if args.rate:
        return latencies(args, periods, start, records)
    answered = sorted(t for t, _, outcome in records if outcome == "ok")

    def rate(begin, end):
        # The first 200 ms of a period are left out: the process beside is still starting or ending.
        b, e = (begin - start) * 1e6 + 200_000, (end - start) * 1e6
        return (bisect.bisect_left(answered, e) - bisect.bisect_left(answered, b)) / ((e - b) / 1e6)

    ratios, cores = {name: [] for name, _ in BESIDE}, {name: [] for name, _ in BESIDE}
    for i in range(1, len(periods) - 1, 2):
        name, begin, end, cpu = periods[i]
        quiet = (rate(*periods[i - 1][1:3]) + rate(*periods[i + 1][1:3])) / 2
        ratios[name].append(rate(begin, end) / quiet)
        cores[name].append(cpu / (end - begin))
    print(f"{args.kind} {' '.join(args.extra) or '(defaults)'}, 4 workers at saturation; {args.periods} periods of "
          f"{args.seconds:g} s beside each, throughput over the quiet periods around it (median, range):")
    for name, _ in BESIDE:
        r, c = ratios[name], cores[name]
        print(f"  beside {name:10}: {statistics.median(r):.1%} ({min(r):.1%}-{max(r):.1%}) of quiet; "
              f"it got {100 * statistics.median(c):.1f}% of a core")


def latencies(args, periods, start, records):
    """--rate's report: each period's p99 over that of the quiet periods around it."""
    answered = [(t, us) for t, us, outcome in records if outcome == "ok"]  # in order of start
    starts = [t for t, _ in answered]

    def p99(begin, end):
        # The first 200 ms of a period are left out, as above; failures are not latencies.
        b, e = (begin - start) * 1e6 + 200_000, (end - start) * 1e6
        within = answered[bisect.bisect_left(starts, b):bisect.bisect_left(starts, e)]
        found = percentile([us for _, us in within], 99)
        if not found:
            raise SystemExit("trickle_cost: a period had no answered request: is the worker serving?")
        return found

    ratios, p99s = {name: [] for name, _ in BESIDE}, {name: [] for name, _ in BESIDE}
    for i in range(1, len(periods) - 1, 2):
        name, begin, end, _ = periods[i]
        quiet = (p99(*periods[i - 1][1:3]) + p99(*periods[i + 1][1:3])) / 2
        ratios[name].append(p99(begin, end) / quiet)
        p99s[name].append(p99(begin, end) / 1000)
    print(f"{args.kind} {' '.join(args.extra) or '(defaults)'}, 4 workers at {args.rate}/s; {args.periods} periods "
          f"of {args.seconds:g} s beside each, p99 over the quiet periods' around it (median, range):")
    for name, _ in BESIDE:
        r = ratios[name]
        print(f"  beside {name:10}: {statistics.median(r):.1f}x ({min(r):.1f}x-{max(r):.1f}x), "
              f"p99 {statistics.median(p99s[name]):.2f} ms")


if __name__ == "__main__":
    sys.exit(main())
