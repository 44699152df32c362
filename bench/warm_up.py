#!/usr/bin/env python3
"""Benchmark (issue 19): herd's reload settings side by side, with the peer benchmark's apps,
scenarios and figures (bench/peers.py's `one_system`): each herd row of the peer benchmark
(stdlib Python, gunicorn, Node workers, and the Python ones with `--fork-server`) run with each of VARIANT's extra `herd run` options,
interleaved, the order rotating each repetition. Prints one line per row and variant: p99
inside reloads over steady at 2000/s, throughput share and p99 ratio at saturation, p99
while scaling 4 -> 8 over steady, reload duration at 2000/s and at saturation; and the load
average. Usage:

    python3 bench/warm_up.py [--reps 2] [--variant 'off=--starting-nice off' ...]

A variant's options may start with `herd=PATH`: that variant runs another herd binary (a
build of an earlier commit, for a behaviour no option selects); and `gunicorn=plain` runs the
gunicorn row without examples/gunicorn_herd.conf.py (`--preload --workers 1 --backlog
SOMAXCONN`, READY=1 from gunicorn's arbiter), e.g.

    python3 bench/warm_up.py --only gunicorn --variant 'plain=gunicorn=plain' --variant 'conf='
"""
import argparse
import statistics
import time

import common
from common import free_port, need_build
from peers import Laps, load_average, one_system, setup
from peers_systems import HerdForked, HerdSystem, gunicorn_under_herd, not_fork_servers, systems

DEFAULT_VARIANTS = ["off=--starting-nice off", "nice=--starting-nice 19", "auto="]


class Variant(HerdSystem):
    """A herd row of the peer benchmark, with extra `herd run` options."""

    def __init__(self, row, label, extra):
        super().__init__(row.port, f"{row.name} [{label}]", row.kind, row.command)
        self.forked = isinstance(row, HerdForked)
        self.binary = extra.pop(0)[len("herd="):] if extra[:1] and extra[0].startswith("herd=") else None
        if "gunicorn=plain" in extra:
            extra.remove("gunicorn=plain")
            if self.forked:
                raise SystemExit(f"warm_up: gunicorn=plain has no meaning for {row.name!r}: pass --only "
                                 "to leave the --fork-server rows out")
            if "gunicorn" in row.name:
                self.command = gunicorn_under_herd(self.command[0], recipe=False)
        self.extra = [*(HerdForked.extra if self.forked else ()), *extra]

    def workers(self):
        children = super().workers()
        return not_fork_servers(self.supervisor(), children) if self.forked else children

    def start(self):
        binary = common.HERD
        common.HERD = self.binary or binary
        try:
            self.herd = common.Herd(self.command, 4, f"127.0.0.1:{self.port},nonblocking",
                                    extra=self.extra).ready()
        finally:
            common.HERD = binary
        return self.ready()


def figures(got):
    o, c, s = got["open"], got["closed"], got.get("scale", {})
    return {"open ratio": o["ratio"], "open p99 ms": o["p99_reload_ms"], "sat share": c["share"],
            "sat share counted": c["share_counted"],
            "sat ratio": c["ratio"], "scale ratio": s.get("ratio"),
            "reload s": statistics.median(o["durations"]),
            "sat reload s": statistics.median(c["durations"]) if c.get("durations") else None,
            "failed": o["failed"] + c["failed"] + s.get("failed", 0)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--only", help="only the herd rows whose name contains this")
    parser.add_argument("--variant", action="append", help="LABEL=OPTIONS (split on spaces)")
    args = parser.parse_args()
    args.reloads, args.saturation_reloads, args.gap, args.idle = 3, 2, 0.5, 0.5
    # The peer benchmark's shape, shorter (bench/peers.py's main).
    args.open_lead, args.open_tail, args.closed_lead, args.closed_gap, args.closed_tail = 2.0, 0.0, 1.5, 1.0, 2.0
    need_build()
    variants = [v.split("=", 1) for v in (args.variant or DEFAULT_VARIANTS)]
    # The rows of the three worker kinds, with and without --fork-server (not those that
    # re-exec, take over or recycle).
    rows = [s for s in systems(setup(), free_port()) if type(s) in (HerdSystem, HerdForked)]
    rows = [r for r in rows if not args.only or args.only in r.name]
    if not rows:
        raise SystemExit(f"warm_up: no herd row's name contains {args.only!r}: try stdlib, gunicorn, Node "
                         "or fork-server")
    every = [Variant(r, label, opts.split()) for r in rows for label, opts in variants]
    results, loads = {}, [load_average()]
    for rep in range(args.reps):
        shift = rep % len(every)
        for system in every[shift:] + every[:shift]:
            system.workers_wanted = 4
            try:
                system.start()
                results.setdefault(system.name, []).append(figures(one_system(system, args, Laps(), False)))
            finally:
                system.stop()
            loads.append(load_average())
    print(f"load average (1 min) over the run: {min(loads):.1f} to {max(loads):.1f}; "
          f"{time.strftime('%H:%M:%S')}")
    for system in every:
        got = results.get(system.name, [])
        cells = []
        for key in got[0] if got else []:
            values = [g[key] for g in got if g[key] is not None]
            cells.append(f"{key} {statistics.median(values):.2f}" if values else f"{key} -")
        print(f"{system.name}: " + ", ".join(cells))


if __name__ == "__main__":
    main()
