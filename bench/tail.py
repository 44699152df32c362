#!/usr/bin/env python3
"""Benchmark (issue 7, scenario 3): tail latency with uneven work, one shared accept queue
(`--balance shared`) against one queue per worker (`--balance reuseport`).

4 `herd-bench-worker` processes burn 50 us of CPU for 9 requests in 10 and 5 ms for the tenth
(`/long`); `herd-loadgen` opens a new connection per request at a fixed rate (open loop) and
reports p50, p99 and p99.9 for short and long requests apart. Prints a table and writes a
report and an SVG chart. Usage:

    python3 bench/tail.py [--seconds 10] [--rate 2000]   (bench/run builds first)
"""
import argparse

from common import WORKER, Herd, bars, figure, loadgen, machine, need_build, report

MODES = ["shared", "reuseport"]
WORKERS = 4
SHORT_US, LONG_US, LONG_EVERY = 50, 5000, 10


def measure(mode, rate, seconds):
    command = [WORKER, "--short-us", str(SHORT_US), "--long-us", str(LONG_US)]
    with Herd(command, WORKERS, extra=["--balance", mode]) as herd:
        return loadgen(herd.address(), rate, seconds, "--threads", 64, "--long-every", LONG_EVERY)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs of each mode")
    parser.add_argument("--report", default=report("tail"))
    args = parser.parse_args()
    need_build()
    results = {m: [] for m in MODES}
    for _ in range(args.rounds):
        for mode in MODES:
            results[mode].append(measure(mode, args.rate, args.seconds))

    def mean_ms(mode, kind, q):
        """The mean over the runs of `mode` of one percentile, in ms."""
        values = [r[kind][q] for r in results[mode]]
        return sum(values) / len(values) / 1000

    rows = ["| balance | kind | requests | p50 ms | p99 ms | p99.9 ms | failed |", "|---|---|---|---|---|---|---|"]
    for mode in MODES:
        failed = sum(r["requests"] - r["ok"] for r in results[mode])
        for kind in ("short", "long"):
            n = sum(r[kind]["n"] for r in results[mode])
            rows.append(f"| {mode} | {kind} | {n} | {mean_ms(mode, kind, 'p50_us'):.2f} | "
                        f"{mean_ms(mode, kind, 'p99_us'):.2f} | {mean_ms(mode, kind, 'p999_us'):.2f} | {failed} |")
    ratio = mean_ms("shared", "short", "p99_us") / mean_ms("reuseport", "short", "p99_us")
    verdict = (f"Short requests' p99, shared / reuseport: **{ratio:.2f}x**; target at most 0.7x: "
               f"**{'met' if ratio <= 0.7 else 'missed'}**.")
    table = "\n".join(rows)
    print(table, "", verdict, sep="\n")
    chart = bars([(f"short {q}", [(m, round(mean_ms(m, "short", k), 2)) for m in MODES])
                  for q, k in (("p50", "p50_us"), ("p99", "p99_us"), ("p99.9", "p999_us"))], "ms")
    svg = figure("tail")
    with open(svg, "w") as f:
        f.write(chart)
    with open(args.report, "w") as f:
        f.write(f"""# Benchmark: tail latency with uneven work

Command: `python3 bench/tail.py --seconds {args.seconds:g} --rate {args.rate}` (or `bench/run tail`)

Machine: {machine()}.

Method: herd runs {WORKERS} `herd-bench-worker` processes (blocking `accept()`), which burn
{SHORT_US} us of CPU for a short request and {LONG_US / 1000:g} ms for a long one (`/long`, one request in
{LONG_EVERY}). `herd-loadgen` opens a new connection per request at {args.rate}/s, open loop (latency
counts from each request's scheduled time), for {args.seconds:g} s per run; the two modes alternate,
{args.rounds} runs each, and the table shows the mean of the runs' percentiles.

{table}

{verdict}

![short requests' latency, shared vs reuseport](tail.svg)

Reading it: with one shared queue, a short request waits only if every worker is busy; with a
queue per worker, the kernel hashes it to one worker, and it waits behind that worker's long
request while others may be idle. Use `shared` (the default) for uneven work, and `reuseport`
for short, even requests or async workers.
""")
    print(f"\nwrote {args.report} and {svg}")


if __name__ == "__main__":
    main()
