#!/usr/bin/env python3
"""Benchmark (issue 7, scenario 4): failed connections while the serving processes change,
under an open-loop load of 2000 new connections/s.

Side by side, in one run, on loopback, with the same worker (examples/hello.py, on a
`nonblocking` socket, `--ready notify`):

- herd: rolling upgrades, re-execs of herd itself, takeovers by a new herd, scaling
  1 -> 8 -> 1, and the same upgrades and scaling with `--balance reuseport`;
- a naive stop-and-start of herd (the socket closes and is bound anew, as any restart without
  socket handover does);
- nginx (2 workers, `return 200`) reloaded with SIGHUP, with a shared socket and with
  `reuseport`.

The load runs exactly as long as each row's changes (`herd-loadgen --until-eof`). Prints a table
and writes its report (see bench/run). Usage:

    python3 bench/changes.py [--rounds 50]   (bench/run builds herd and herd-loadgen first)
"""

import argparse
import json
import os
import subprocess
import sys
import time

from common import HELLO, HERD, LOADGEN, Herd, free_port, machine, report, start_nginx, wait_until

RATE = 2000
WORKERS = 4


def hello(port, workers=WORKERS, extra=(), control=None, takeover=False):
    return Herd([sys.executable, HELLO], workers, f"127.0.0.1:{port},nonblocking", extra, control, takeover)


class Load:
    """herd-loadgen at RATE new connections/s, until the `with` block ends."""

    def __init__(self, port):
        self.port = port

    def __enter__(self):
        self.proc = subprocess.Popen(
            [LOADGEN, f"127.0.0.1:{self.port}", str(RATE), "3600", "--threads", "64", "--until-eof",
             "--timeout", "5"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        time.sleep(0.2)  # let the load reach its rate before the first change
        return self

    def __exit__(self, *exc):
        time.sleep(0.2)
        out, _ = self.proc.communicate(timeout=120)
        self.result = json.loads(out)


def herd_row(rounds, change, extra=()):
    """Starts a herd, runs `change(herd)` `rounds` times under load, returns the load result."""
    port = free_port()
    herd = hello(port, extra=extra).ready()
    with Load(port) as load:
        for _ in range(rounds):
            herd = change(herd) or herd
    herd.stop()
    return load.result


def upgrade(herd):
    herd.ctl("upgrade")


def reexec(herd):
    herd.ctl("reexec")


def takeover(herd):
    port = int(herd.address().rsplit(":", 1)[1])
    new = hello(port, control=herd.control, takeover=True)
    herd.proc.wait(timeout=60)
    return new.ready()


def scale_1_8_1(herd):
    for n in (1, 8, 1):
        herd.scale(n)


def naive(rounds):
    port = free_port()
    herd = hello(port).ready()
    with Load(port) as load:
        for _ in range(rounds):
            herd.stop()
            herd = hello(port, control=herd.control).ready()
    herd.stop()
    return load.result


def nginx_workers(master):
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True)
    return set(out.stdout.split())


def nginx_row(rounds, reuseport):
    started = start_nginx(reuseport)
    if started is None:
        return None
    proc, port = started
    wait_until("nginx workers", lambda: len(nginx_workers(proc.pid)) == 2)
    with Load(port) as load:
        for _ in range(rounds):
            old = nginx_workers(proc.pid)
            proc.send_signal(1)  # SIGHUP: new workers, old ones drain
            wait_until("nginx's old workers to exit", lambda: not (old & nginx_workers(proc.pid))
                       and len(nginx_workers(proc.pid)) == 2)
    proc.send_signal(3)  # SIGQUIT: graceful stop
    proc.wait(timeout=60)
    return load.result


def upgrade_time(workers=8, repeats=5):
    """The median time of a rolling upgrade of `workers` workers, without load."""
    herd = hello(free_port(), workers=workers).ready()
    times = []
    for _ in range(repeats):
        t = time.monotonic()
        herd.ctl("upgrade")
        times.append(time.monotonic() - t)
    herd.stop()
    return sorted(times)[len(times) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=50, help="rolling upgrades (others: a fifth)")
    parser.add_argument("--report", default=report("changes"))
    args = parser.parse_args()
    for tool in (HERD, LOADGEN):
        if not os.access(tool, os.X_OK):
            raise SystemExit("build first: cargo build --release -p herd-cli -p herd-loadgen")
    few = max(1, args.rounds // 5)
    rp = ["--balance", "reuseport"]
    rows = [
        ("herd", f"{args.rounds} rolling upgrades", lambda: herd_row(args.rounds, upgrade)),
        ("herd", f"{few} re-execs of herd", lambda: herd_row(few, reexec)),
        ("herd", f"{few} takeovers by a new herd", lambda: herd_row(few, takeover)),
        ("herd", f"scale 1 -> 8 -> 1, {max(1, few // 2)} times", lambda: herd_row(max(1, few // 2), scale_1_8_1)),
        ("herd --balance reuseport", f"{few} rolling upgrades", lambda: herd_row(few, upgrade, rp)),
        ("herd --balance reuseport", f"scale 1 -> 8 -> 1, {max(1, few // 2)} times",
         lambda: herd_row(max(1, few // 2), scale_1_8_1, rp)),
        ("naive", f"{few} stop-and-start restarts", lambda: naive(few)),
        ("nginx, 2 workers", f"{few} SIGHUP reloads", lambda: nginx_row(few, False)),
        ("nginx, 2 workers, reuseport", f"{few} SIGHUP reloads", lambda: nginx_row(few, True)),
    ]
    header = ("who", "changes", "seconds", "requests", "failed", "refused", "reset", "eof", "timeout", "p99 ms")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    herd_failed = 0
    for who, what, run in rows:
        print(f"-- {who}: {what}", flush=True)
        r = run()
        if r is None:
            lines.append(f"| {who} | {what} | not installed | | | | | | | |")
            continue
        failed = r["requests"] - r["ok"]
        if who.startswith("herd"):
            herd_failed += failed
        lines.append(f"| {who} | {what} | {r['seconds']:.1f} | {r['requests']} | **{failed}** | {r['refused']} | "
                     f"{r['reset']} | {r['eof']} | {r['timeout']} | {r['p99_us'] / 1000:.1f} |")
    table = "\n".join(lines)
    median = upgrade_time()
    verdict = (f"Target: zero failed connections in every herd row: "
               f"**{'met' if herd_failed == 0 else 'missed'}** ({herd_failed} failed).")
    print(table, "", f"rolling upgrade of 8 workers: median {median:.2f} s", verdict, sep="\n")
    with open(args.report, "w") as f:
        f.write(f"""# Benchmark: changes under load

Command: `python3 bench/changes.py --rounds {args.rounds}` (or `bench/run changes`, which builds first)

Machine: {machine()}.

Method: `herd-loadgen` opens a new TCP connection per request at {RATE} requests/s (open loop:
a late answer counts as latency, not as fewer requests; 5 s timeout) on loopback, for exactly
as long as each row's changes take, and counts every failure by kind. herd rows run
{WORKERS} `examples/hello.py` workers (`nonblocking`, `--ready notify`; scaling rows move
between 1 and 8); every change waits until it has finished (all workers ready, the old herd
gone) before the next. The naive row stops herd and starts it again (the socket closes and is
bound anew). The nginx rows run nginx 2 workers answering `return 200` and reload it with
SIGHUP, waiting each time until the old workers have exited.

{table}

{verdict}

A rolling upgrade of 8 workers (`--max-surge 1`; each new worker must send `READY=1` before its
predecessor is stopped) takes **{median:.2f} s** (median of 5, without load).

Reading it: herd never closes a listening socket while it serves, so an upgrade, a re-exec or a
takeover only changes who accepts from the same queue; scaling down with `reuseport` first
steers new connections away from the slot and lets its queue drain. A naive restart refuses
connections while no socket listens, and resets the ones queued in the socket it closes. nginx
keeps its shared socket across a reload too; with `reuseport`, each old worker's socket is
closed with its queue.
""")
    print(f"\nwrote {args.report}")


if __name__ == "__main__":
    main()
