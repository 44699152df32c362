#!/usr/bin/env python3
"""Benchmark (issue 19): herd against its peers, side by side, with the same apps and 4 workers
each: PM2 (cluster mode, `pm2 reload`, also with `wait_ready`), gunicorn's arbiter (HUP,
TTIN/TTOU), circus (a socket watcher, `circusctl reload`, incr/decr), uWSGI (chain and graceful
reload), nginx (HUP) and herd (`herd upgrade`, `herd scale`) with stdlib Python, gunicorn and
Node workers; and herd alone re-executing itself, taken over by a new herd, and recycling its
workers (--max-lifetime). For each system, repeated and interleaved:

- open loop, 2000 new connections/s, through 10 reloads;
- closed loop at saturation (32 connections), through 5 reloads;
- scaling 4 -> 8 -> 4 under the open-loop load (where the system can scale), and for herd
  also at saturation (in the first repetition).

A run's reloads stop early once their windows hold enough time (bench/peers_shape.py's
`enough`: herd's slow reloads at saturation hold far more requests than a peer's 5).

Then bench/scale_targets.py's 4096 native workers (when it is there). herd's takeover row gets
fewer reloads (its `most_reloads`; the report says so). Each system run prints where its time
went; the report sums it up per system.

herd-loadgen's `--timeline` cuts each run into reload windows (from the reload command until
the old workers are gone and 4 new ones run) and steady time. Installs the peers first
(bench/peers-setup.sh: pinned, cached). Usage:

    python3 bench/peers.py [--reps 2] [--quick]   (bench/run builds first)
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

from common import LOADGEN, ROOT, figure, free_port, machine, need_build, report
from peers_report import write_report
from peers_stats import binned_p99, cut, read_timeline
from peers_load import OtherWork
from peers_shape import enough, reload_counts, running_order, time_line, top_up
from peers_systems import cpu_seconds, herd_defaults, rss_mib, systems, versions

RATE = 2000
CONNECTIONS = 32
# The arguments that shape a run, saved with its figures for the report (`--from`).
SHAPE = ("reps", "quick", "reloads", "saturation_reloads", "idle", "open_lead", "open_tail", "closed_lead", "gap",
         "closed_gap", "closed_tail")


def setup():
    """Installs the pinned peers (bench/peers-setup.sh) and puts its Node first on this
    process's PATH, for every Node row and PM2; returns the cache directory."""
    out = subprocess.run([os.path.join(ROOT, "bench", "peers-setup.sh")], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"peers: bench/peers-setup.sh failed: {out.stderr.strip()}")
    cache = out.stdout.strip().splitlines()[-1]
    node = os.path.join(cache, "node", "node_modules", ".bin")
    if os.path.exists(os.path.join(node, "node")):
        os.environ["PATH"] = node + os.pathsep + os.environ.get("PATH", "")
    return cache


def under_load(system, steps, closed, lead, gap, reloads=False, tail=0.0):
    """Runs herd-loadgen (open loop at RATE, or closed loop with CONNECTIONS) with a timeline
    while `steps` run one after another, `gap` seconds apart after `lead` steady seconds and
    before `tail` more; for `reloads`, only until their windows are enough, then the steady time
    the rest would have given (peers_shape's `enough` and `top_up`). Returns (its JSON result,
    the timeline, the steps' windows in µs, the supervisor's CPU seconds meanwhile)."""
    timeline = os.path.join(tempfile.mkdtemp(prefix="herd-peers-"), "timeline.csv")
    load = [LOADGEN, system.address, "0" if closed else str(RATE), "3600", "--until-eof", "--timeout", "5",
            "--timeline", timeline, *(["--concurrency", str(CONNECTIONS)] if closed else ["--threads", "256"])]
    cpu0 = cpu_seconds(system.supervisor())
    proc = subprocess.Popen(load, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(lead)
        windows = []
        for step in steps:
            begin = time.time()
            step()
            windows.append((begin, time.time()))
            time.sleep(gap)
            if reloads and enough([e - b for b, e in windows], len(steps), "closed" if closed else "open"):
                break
        time.sleep(tail + (top_up(len(windows), len(steps), gap) if reloads else 0))
    except BaseException:
        proc.kill()  # a step failed: no load left behind
        proc.wait()
        raise
    out, _ = proc.communicate(timeout=60)
    cpu = cpu_seconds(system.supervisor()) - cpu0
    result = json.loads(out)
    start = result["start_unix_us"] / 1e6
    windows = [((b - start) * 1e6, (e - start) * 1e6) for b, e in windows]
    records = read_timeline(timeline)
    shutil.rmtree(os.path.dirname(timeline))
    return result, records, windows, cpu


def figures(result, records, windows, windowed=True):
    """A run's figures, its windows and their durations. The run ends with its last request's
    start: the load's own `seconds` also counts the wait for the last answers (up to the 5 s
    timeout), which is no sending time. Without `windowed`, the steps were no changes to cut
    out (recycling goes on all the time): the whole run counts as steady."""
    got = cut(records, windows if windowed else [])
    got["durations"] = [(e - b) / 1e6 for b, e in windows]
    got["sent_s"] = max((r[0] for r in records), default=0) / 1e6
    return got


class Laps:
    """Seconds per phase of a system's run: `lap(phase)` ends the phase that began at the last lap."""

    def __init__(self):
        self.phases, self.clock = {}, time.monotonic()

    def lap(self, phase):
        now = time.monotonic()
        self.phases[phase] = self.phases.get(phase, 0.0) + now - self.clock
        self.clock = now


def one_system(system, args, laps, first):
    """Every scenario on one started system; returns {scenario: figures}. The supervisor's idle
    CPU is measured in the `first` repetition only (at a 10 ms tick it is 0 or noise)."""
    got = {}
    opens, closes = reload_counts(system.most_reloads, args.reloads, args.saturation_reloads)
    if system.table == "peers" and first:
        cpu0 = cpu_seconds(system.supervisor())
        time.sleep(args.idle)
        got["idle_cpu"] = 100 * (cpu_seconds(system.supervisor()) - cpu0) / args.idle
        laps.lap("idle")
    steps = system.changes(opens)
    result, records, windows, cpu = under_load(system, steps, False, args.open_lead, args.gap, True, args.open_tail)
    got["open"] = figures(result, records, windows, system.windowed)
    got["open"]["asked"] = len(steps)
    if system.table == "peers":
        got["open"].update(load_cpu=100 * cpu / max(got["open"]["sent_s"], 1e-9), rss=rss_mib(system.supervisor()),
                           chart=(binned_p99(records, 250_000), [(b / 1e6, e / 1e6) for b, e in windows]))
    laps.lap("open")
    steps = system.changes(closes)
    result, records, windows, _ = under_load(system, steps, True, args.closed_lead, args.closed_gap, True,
                                             args.closed_tail)
    got["closed"] = figures(result, records, windows, system.windowed)
    got["closed"]["asked"] = len(steps)
    laps.lap("closed")
    if system.can_scale:
        steps = [lambda: system.scale(8), lambda: system.scale(4)]
        got["scale"] = figures(*under_load(system, steps, False, args.open_lead, args.gap)[:3])
        laps.lap("scale")
        if system.by_herd and first:  # the 0-failed target holds herd's scaling at saturation too
            got["scale_closed"] = figures(*under_load(system, steps, True, args.closed_lead, args.closed_gap)[:3])
            laps.lap("scale_closed")
    return got


def wrk_check(address, seconds):
    """herd-loadgen against wrk on the same steady target, closed loop with CONNECTIONS new
    connections: (loadgen req/s, loadgen p99 ms, wrk req/s, wrk p99 ms)."""
    r = json.loads(subprocess.run([LOADGEN, address, "0", str(seconds), "--concurrency", str(CONNECTIONS)],
                                  capture_output=True, text=True, check=True).stdout)
    if not shutil.which("wrk"):
        return r["ok"] / r["seconds"], r["p99_us"] / 1000, None, None
    out = subprocess.run(["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-H",
                          "Connection: close", f"http://{address}/"], capture_output=True, text=True).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\b", out, re.M)
    scale = {"us": 0.001, "ms": 1, "s": 1000}
    return (r["ok"] / r["seconds"], r["p99_us"] / 1000, float(rate.group(1)) if rate else None,
            float(p99.group(1)) * scale[p99.group(2)] if p99 else None)


def scale_targets(args):
    """The scale targets' figures from bench/scale_targets.py (4096 native workers), or why
    there are none."""
    if args.only:
        return "left out with --only"
    try:
        from scale_targets import measure
    except ImportError:
        return "bench/scale_targets.py is missing"
    print("-- scale targets: bench/scale_targets.py", flush=True)
    try:
        others = OtherWork()
        figures = measure()
        return {**figures, "others": others.stop()}
    except (SystemExit, OSError, subprocess.SubprocessError, ValueError) as e:
        return f"bench/scale_targets.py failed: {e}"


def load_average():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=2, help="repetitions of every system (interleaved)")
    parser.add_argument("--quick", action="store_true", help="1 repetition, 2 and 1 reloads")
    parser.add_argument("--only", help="run only the systems whose name contains this")
    parser.add_argument("--report", default=report("peers"))
    parser.add_argument("--from", dest="saved", metavar="JSON",
                        help="only write the report again, from the figures a run saved (REPORT.json)")
    args = parser.parse_args()
    # The shape: 10 reloads at 2000/s and 5 at saturation. Steady time at 2000/s is the
    # lead and the tail (the 0.3 s gaps are mostly settling time): 4.5 s, 9,000 requests, for a
    # p99 that a 1.5 s lead alone (3,000) left to one hiccup of the machine; before and after the
    # reloads, so that a drift over the run does not fall on one side. At saturation 32
    # connections give 4,000-11,000 requests a second: the 2 s lead and 1 s gaps are enough for
    # the p99s. What a reload lost is counted until 2 s after its window (peers_stats's
    # AFTER_US), against the rest of the run's rate: the 2 s tail leaves steady time after the
    # last reload's count too.
    args.reloads, args.saturation_reloads, args.idle = 10, 5, 2.0
    args.open_lead, args.open_tail, args.closed_lead, args.gap, args.closed_gap = 3.5, 2.0, 2.0, 0.3, 1.0
    args.closed_tail = 2.0
    if args.quick:
        args.reps, args.reloads, args.saturation_reloads, args.idle = 1, 2, 1, 1.0
    saved = None
    if args.saved:
        with open(args.saved) as f:
            saved = json.load(f)
        # The report describes the run's shape, not this one's (runs saved before 2026-12-05
        # had a 2.5 s lead at 2000/s and no tail).
        vars(args).update({"closed_tail": 0.0, **saved.get("shape", {"open_lead": 2.5, "open_tail": 0.0})})
    need_build()
    cache = setup()
    everything = systems(cache, free_port())
    everything = [s for s in everything if not args.only or args.only in s.name]
    if saved:
        write_report(args, everything, saved["results"], saved["errors"], saved["cross"], versions(cache),
                     saved["loads"], saved["took"], figure("peers"), machine(), saved.get("scale", "not saved"),
                     saved.get("defaults", herd_defaults()))
        return
    results, errors, loads = {}, {}, [load_average()]
    started = time.monotonic()
    for rep in range(args.reps):
        for system in running_order(everything, rep):
            print(f"-- rep {rep + 1}/{args.reps}: {system.name}", flush=True)
            system.workers_wanted = 4
            system.fresh_port()
            laps = Laps()
            try:
                system.start()
                laps.lap("start")
                others, began = OtherWork(system.supervisor()), time.monotonic()
                got = one_system(system, args, laps, rep == 0)
                got["others"], got["took"] = others.stop(), time.monotonic() - began
                got["phases"] = laps.phases  # the stop's lap joins it below
                results.setdefault(system.name, []).append(got)
            except (SystemExit, OSError, subprocess.SubprocessError, ValueError) as e:
                errors.setdefault(system.name, []).append(f"repetition {rep + 1}: {e}")
                print(f"   failed: {e}", flush=True)
            finally:
                try:
                    system.stop()
                except (SystemExit, OSError, subprocess.SubprocessError):
                    pass
                laps.lap("stop")
                print(f"   {time_line((system.name, sum(laps.phases.values()), laps.phases))}", flush=True)
            loads.append(load_average())
    cross = []
    for system in everything:
        if system.name in ("herd, stdlib Python", "nginx"):
            system.workers_wanted = 4
            system.fresh_port()
            system.start()
            cross.append((system.name, *wrk_check(system.address, 2 if args.quick else 4)))
            system.stop()
    scale, defaults = scale_targets(args), herd_defaults()
    took = time.monotonic() - started
    with open(os.path.splitext(args.report)[0] + ".json", "w") as f:  # to rewrite the report: --from
        json.dump({"results": results, "errors": errors, "cross": cross, "loads": loads, "took": took,
                   "scale": scale, "defaults": defaults, "shape": {k: getattr(args, k) for k in SHAPE}}, f)
    write_report(args, everything, results, errors, cross, versions(cache), loads, took, figure("peers"),
                 machine(), scale, defaults)
    print(f"\nwrote {args.report} and {figure('peers')}")


if __name__ == "__main__":
    main()
