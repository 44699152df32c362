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
throughput. `--saturation --upgrades N` runs N upgrades, each followed by 5 s of steady time,
and prints each upgrade's throughput over the steady time just before and after it (split where
the fork server said READY=1), their median, and the share pooled as bench/peers.py counts it:
one upgrade's share is uncertain by the machine's drift, several of them are not; and what each
upgrade lost: the requests missing from it and the 3 s after it against the rate of the 2 s
before it (after the 3 s the previous upgrade counts; the first follows 5 s of load), in
seconds of that rate (a cost that falls after a window, as a Node worker's
warm-up does, lowers the steady time around it and raises the share, not this).
`--fork-server` among herd's options also runs the command through python/herd_fork.py, as the
peer benchmark's `--fork-server` rows do. Run it under the bench lock. Usage:

    python3 bench/upgrade_phases.py [--saturation [--upgrades N]] KIND [HERD RUN OPTIONS...]

KIND: `py` (examples/hello.py's stdlib server), `gunicorn` (one arbiter and one sync worker,
as docs/interop.md's examples/gunicorn_herd.conf.py runs it), `gunicorn-plain` (the same
without that config file: `--preload --workers 1 --backlog SOMAXCONN`), `gunicorn-solo`
(python/herd_gunicorn.py, the peer benchmark's herd gunicorn rows), `node`.
"""
import bisect
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
# --upgrades N: the steady time after each upgrade, each upgrade's baseline with the one before it.
PAIRED_GAP_S = 5.0
# How long after an upgrade its cost is still counted (--upgrades' `lost`): a new worker's
# warm-up goes on past the window (Node's JIT compiles for a second or more after READY=1).
AFTER_US = 3_000_000
# The steady time before an upgrade that `lost` takes as its rate: what the previous upgrade's
# counted-after time leaves of the gap (the first upgrade's lead is as long as the gap).
BEFORE_US = PAIRED_GAP_S * 1e6 - AFTER_US
SETTLE_US = 250_000  # after an upgrade, neither steady nor inside it (bench/peers_stats.py's)
EVENTS = ("worker_started", "worker_ready", "worker_exited", "fork_server_started", "fork_server_ready",
          "fork_server_exited")


def run(command, extra, closed, upgrades=1):
    """`upgrades` upgrades of workers running `command` under load (closed loop with 32
    connections if `closed`, else 2000 new connections/s), each followed by steady time
    (PAIRED_GAP_S with more than one, which the first also follows): (timeline records, the
    upgrade windows in µs, herd's events)."""
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
        time.sleep(PAIRED_GAP_S if upgrades > 1 else 2.5 if closed else 1.5)
        windows = []
        for _ in range(upgrades):
            begin = time.time()
            subprocess.run([HERD, "--control", control, "upgrade"], check=True, capture_output=True)
            windows.append((begin, time.time()))
            time.sleep(PAIRED_GAP_S if upgrades > 1 else 2.5 if closed else 1.0)
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
    return read_timeline(timeline), [((b - start) * 1e6, (e - start) * 1e6) for b, e in windows], events


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


def paired(records, windows, events):
    """--upgrades' report: each upgrade's throughput over the steady time just before and after
    it (the machine's rate drifts from one second to the next, so its neighbours, not the run's
    average, are its baseline), split where the fork server (if any) said READY=1; and the
    pooled share, as bench/peers.py counts it."""
    answered = sorted(t for t, _, outcome in records if outcome == "ok")
    run_end = max(t for t, _, _ in records)

    def count(b, e):
        return bisect.bisect_left(answered, e) - bisect.bisect_left(answered, b)

    def rate(b, e):
        return count(b, e) / ((e - b) / 1e6)

    steady = [(300_000, windows[0][0])] + [(e + SETTLE_US, nxt[0] if nxt else run_end)
                                           for (_, e), nxt in zip(windows, windows[1:] + [None])]
    lines, shares, losses = [], [], []
    for i, (b, e) in enumerate(windows):
        base = (rate(*steady[i]) + rate(*steady[i + 1])) / 2
        shares.append(rate(b, e) / base)
        before = rate(b - BEFORE_US, b)
        if e + AFTER_US <= run_end:
            losses.append((before * (e + AFTER_US - b) / 1e6 - count(b, e + AFTER_US)) / before)
        ready = [t for t, name, _ in events if name == "fork_server_ready" and b <= t <= e]
        split = (f"; {rate(b, ready[0]) / base:.1%} while the fork server loaded ({(ready[0] - b) / 1e6:.1f} s), "
                 f"{rate(ready[0], e) / base:.1%} after" if ready else "")
        lines.append(f"  upgrade {i + 1}: {(e - b) / 1e6:.2f} s, {shares[-1]:.1%} of the steady {base:.0f} req/s "
                     f"around it{split}" + (f"; lost {losses[i]:.2f} s of the rate before it" if i < len(losses) else ""))
    pooled = (sum(count(b, e) for b, e in windows) / sum(e - b for b, e in windows)) / \
        (sum(count(b, e) for b, e in steady) / sum(e - b for b, e in steady))
    return lines, statistics.median(shares), pooled, statistics.median(losses) if losses else float("nan")


def main():
    args = sys.argv[1:]
    closed = args[:1] == ["--saturation"]
    upgrades = 1
    if args[closed:closed + 1] == ["--upgrades"] and closed:
        try:
            upgrades = int(args[closed + 1])
        except (IndexError, ValueError):
            upgrades = 0
        if upgrades < 2:
            raise SystemExit("upgrade_phases: --upgrades takes a number of upgrades, 2 or more")
        args = args[:closed] + args[closed + 2:]
    if len(args) <= closed or args[closed].startswith("-"):
        raise SystemExit("usage: bench/upgrade_phases.py [--saturation [--upgrades N]] "
                         "py|gunicorn|gunicorn-plain|gunicorn-solo|node [HERD RUN OPTIONS...]")
    kind, extra = args[closed], args[closed + 1:]
    command = worker_kinds(python(setup()))[kind]
    if "--fork-server" in extra:
        command = forked(command)
    records, windows, events = run(command, extra, closed, upgrades)
    if upgrades > 1:
        lines, median, pooled, lost = paired(records, windows, events)
        print(f"{kind} {' '.join(extra) or '(defaults)'} at saturation, {upgrades} upgrades {PAIRED_GAP_S:g} s apart: "
              f"median share {median:.1%} of the steady time around each, pooled {pooled:.1%}; median lost "
              f"{lost:.2f} s of the rate of the {BEFORE_US / 1e6:g} s before each (its requests missing from it "
              f"and the {AFTER_US / 1e6:g} s after it)\n" + "\n".join(lines))
        return
    first, last = windows[0]
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
