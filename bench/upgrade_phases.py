#!/usr/bin/env python3
"""Where the time goes in a herd upgrade (issue 19): herd with 4 workers of the peer
benchmark's apps and `--log-format json`, `herd-loadgen --timeline` at 2000 new connections/s,
one `herd upgrade`. Each request inside the upgrade is placed by herd's own event timestamps:
while a new worker is starting (worker_started to worker_ready), while an old worker is
stopping (its successor available, --min-ready after worker_ready, to its worker_exited), or
neither; the script prints the p99 of each and how many requests took over twice the steady
p99. With `--saturation` (first, if given), the load is closed loop with 32 connections (the
peer benchmark's saturation) and the script prints the throughput in 100 ms bins from just
before the upgrade to just after it, each as a percentage of the steady rate before it, with
herd's events in each bin (w_ worker, fs_ fork server): where an upgrade at saturation loses
throughput. `--fork-server` among herd's options also runs the command through
python/herd_fork.py, as the peer benchmark's `--fork-server` rows do. Run it under the bench
lock. Usage:

    python3 bench/upgrade_phases.py [--saturation] py|gunicorn|gunicorn-plain|node [HERD RUN OPTIONS...]

`gunicorn` runs it as docs/interop.md says (examples/gunicorn_herd.conf.py); `gunicorn-plain`
without that config file (`--preload --workers 1 --backlog SOMAXCONN`).
"""
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from common import HERD, LOADGEN, status
from peers_stats import percentile, read_timeline
from peers import setup
from peers_systems import forked, python, worker_kinds

MIN_READY_US = 1e6  # herd's default --min-ready
BIN_US = 100_000  # --saturation's throughput bins
EVENTS = ("worker_started", "worker_ready", "worker_exited", "fork_server_started", "fork_server_ready",
          "fork_server_exited")


def run(command, extra, closed):
    """One upgrade of workers running `command` under load (closed loop with 32 connections if
    `closed`, else 2000 new connections/s): (timeline records, upgrade window in µs, herd's
    events)."""
    d = tempfile.mkdtemp(prefix="herd-phases-")
    control, log_path = os.path.join(d, "c.sock"), os.path.join(d, "log.json")
    with open(log_path, "w") as log:
        herd = subprocess.Popen([HERD, "--log-format", "json", "--control", control, "run", "-w", "4",
                                 "--ready", "notify", *extra, "-b", "http=127.0.0.1:0,nonblocking", "--",
                                 *command], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while True:
            try:
                s = status(control)
                if s["ready"] == 4:
                    break
            except (OSError, ValueError, KeyError, subprocess.SubprocessError):
                pass
            if time.monotonic() > deadline:
                herd.kill()
                raise SystemExit(f"{command[0]}: herd's workers were not ready within 30 s")
            time.sleep(0.05)
        timeline = os.path.join(d, "timeline.csv")
        shape = ["0", "3600", "--concurrency", "32"] if closed else ["2000", "3600", "--threads", "256"]
        load = subprocess.Popen([LOADGEN, s["sockets"][0]["address"], *shape, "--until-eof", "--timeout", "5",
                                 "--timeline", timeline], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        time.sleep(2.5 if closed else 1.5)
        begin = time.time()
        subprocess.run([HERD, "--control", control, "upgrade"], check=True, capture_output=True)
        end = time.time()
        time.sleep(2.5 if closed else 1.0)
        out, _ = load.communicate(timeout=60)
        subprocess.run([HERD, "--control", control, "stop"], capture_output=True)
        herd.wait(timeout=60)
    start = json.loads(out)["start_unix_us"] / 1e6
    events = []
    with open(log_path) as f:
        for line in f:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            fields = e.get("fields", e)
            if fields.get("event") in EVENTS and "timestamp" in e:
                at = datetime.datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp()
                events.append(((at - start) * 1e6, fields["event"], fields.get("pid")))
    return read_timeline(timeline), ((begin - start) * 1e6, (end - start) * 1e6), events


def phases(window, events):
    """The spans (µs) in which a new worker starts, and in which an old one stops."""
    first, last = window
    at = {name: {} for name in ("worker_started", "worker_ready", "worker_exited")}
    for t, name, pid in events:
        if name in at:
            at[name][pid] = t
    new = [p for p, t in at["worker_started"].items() if t >= first - 1000]
    old = [p for p, t in at["worker_started"].items() if t < first - 1000]
    starting = [(at["worker_started"][p], at["worker_ready"].get(p, last)) for p in new]
    available = sorted(at["worker_ready"][p] + MIN_READY_US for p in new if p in at["worker_ready"])
    stopping = list(zip(available, sorted(at["worker_exited"].get(p, last) for p in old)))
    return starting, stopping


def bins(records, window, events):
    """--saturation's report: the steady rate before the upgrade, and a line of 100 ms bins
    around it, each a percentage of that rate with herd's events in it."""
    first, last = window
    counts = {}
    for t, _, outcome in records:
        if outcome == "ok":
            counts[int(t // BIN_US)] = counts.get(int(t // BIN_US), 0) + 1
    # Steady: from 300 ms in (the load's ramp) until the upgrade.
    before = [counts.get(i, 0) for i in range(3, int(first // BIN_US))]
    if not any(before):
        raise SystemExit("upgrade_phases: no request was answered before the upgrade: is the worker serving?")
    steady = statistics.mean(before)
    inside = statistics.mean(counts.get(i, 0) for i in range(int(first // BIN_US), int(last // BIN_US) + 1))
    short = {"worker_": "w_", "fork_server_": "fs_"}
    cells = []
    for i in range(int(first // BIN_US) - 2, int(last // BIN_US) + 4):
        names = [name for t, name, _ in events if int(t // BIN_US) == i]
        for long, brief in short.items():
            names = [n.replace(long, brief) for n in names]
        cells.append(f"{100 * counts.get(i, 0) / steady:3.0f}" + (f"[{','.join(names)}]" if names else ""))
    return steady * 1e6 / BIN_US, inside / steady, " ".join(cells)


def main():
    args = sys.argv[1:]
    closed = args[:1] == ["--saturation"]
    if len(args) <= closed or args[closed].startswith("-"):
        raise SystemExit("usage: bench/upgrade_phases.py [--saturation] py|gunicorn|gunicorn-plain|node "
                         "[HERD RUN OPTIONS...]")
    kind, extra = args[closed], args[closed + 1:]
    command = worker_kinds(python(setup()))[kind]
    if "--fork-server" in extra:
        command = forked(command)
    records, (first, last), events = run(command, extra, closed)
    if closed:
        rate, share, line = bins(records, (first, last), events)
        print(f"{kind} {' '.join(extra) or '(defaults)'} at saturation: steady {rate:.0f} req/s, in the upgrade "
              f"{share:.1%} of it, upgrade {(last - first) / 1e6:.2f} s; per 100 ms, % of steady:\n{line}")
        return
    steady = [us for t, us, _ in records if 200_000 < t < first - 100_000 or t > last + 250_000]
    steady_p99 = percentile(steady, 99)
    starting, stopping = phases((first, last), events)
    groups = {"a new worker starting": [], "an old worker stopping": [], "neither": []}
    for t, us, _ in records:
        if first <= t <= last:
            where = ("a new worker starting" if any(a <= t <= b for a, b in starting) else
                     "an old worker stopping" if any(a <= t <= b for a, b in stopping) else "neither")
            groups[where].append(us)
    inside = [us for g in groups.values() for us in g]
    print(f"{kind} {' '.join(extra) or '(defaults)'}: steady p99 {steady_p99 / 1000:.2f} ms, in the upgrade "
          f"{percentile(inside, 99) / 1000:.2f} ms ({percentile(inside, 99) / steady_p99:.1f}x), upgrade "
          f"{(last - first) / 1e6:.2f} s; start-ups {', '.join(f'{(b - a) / 1000:.0f}' for a, b in starting)} ms")
    for name, values in groups.items():
        if values:
            slow = sum(us > 2 * steady_p99 for us in values)
            print(f"  {name}: {len(values)} requests, p99 {percentile(values, 99) / 1000:.2f} ms, "
                  f"{slow} ({100 * slow / len(values):.1f}%) over 2x steady p99")


if __name__ == "__main__":
    main()
