#!/usr/bin/env python3
"""Benchmark: failed connections while workers are replaced under a steady load.

Side by side, in one run, on loopback, with the same worker (examples/hello.py):

1. herd rolling upgrades: `herd upgrade`, N times, while clients open a new connection per
   request;
2. a naive stop-and-start: the supervisor stopped and started again N times (the socket closes
   and is bound anew, as a restart without socket handover does), under the same load;
3. how long one rolling upgrade of 8 workers takes.

Prints a table and writes docs/benchmarks-upgrades.md. Usage:

    cargo build --release && python3 bench/upgrades.py [--rounds 50] [--clients 4]
"""

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERD = os.path.join(ROOT, "target", "release", "herd")
HELLO = os.path.join(ROOT, "examples", "hello.py")


class Load:
    """Closed-loop clients, each opening a new connection per request; failures by kind."""

    def __init__(self, port, clients):
        self.port = port
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures = {}
        self.threads = [threading.Thread(target=self.client, daemon=True) for _ in range(clients)]

    def fail(self, kind):
        with self.lock:
            self.failures[kind] = self.failures.get(kind, 0) + 1

    def client(self):
        while not self.stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                    data = b""
                    while True:
                        chunk = s.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                if b"hello from pid" in data:
                    with self.lock:
                        self.ok += 1
                else:
                    self.fail("eof before reply")
            except ConnectionRefusedError:
                self.fail("refused")
                time.sleep(0.001)
            except ConnectionResetError:
                self.fail("reset")
            except socket.timeout:
                self.fail("timeout")
            except OSError as e:
                self.fail(type(e).__name__)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_herd(port, control, workers):
    proc = subprocess.Popen(
        [HERD, "--log-level", "warn", "--control", control, "run", "-w", str(workers),
         "--ready", "notify", "-b", f"http=127.0.0.1:{port},nonblocking", "--",
         sys.executable, HELLO],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    wait_ready(control, workers)
    return proc


def ctl(control, *args):
    out = subprocess.run([HERD, "--control", control, *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"herd {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout


def wait_ready(control, workers, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run([HERD, "--control", control, "status", "--json"],
                             capture_output=True, text=True)
        if out.returncode == 0:
            status = json.loads(out.stdout)
            if status["ready"] == workers and status["running"] == workers:
                return
        time.sleep(0.02)
    raise SystemExit(f"{workers} workers were not ready within {timeout}s")


def rolling(rounds, clients, workers):
    port, tmp = free_port(), tempfile.mkdtemp()
    control = os.path.join(tmp, "control.sock")
    proc = start_herd(port, control, workers)
    started = time.monotonic()
    with Load(port, clients) as load:
        for _ in range(rounds):
            ctl(control, "upgrade")
    elapsed = time.monotonic() - started
    ctl(control, "stop")
    proc.wait()
    return load, elapsed


def naive(rounds, clients, workers):
    port, tmp = free_port(), tempfile.mkdtemp()
    control = os.path.join(tmp, "control.sock")
    proc = start_herd(port, control, workers)
    started = time.monotonic()
    with Load(port, clients) as load:
        for _ in range(rounds):
            ctl(control, "stop")
            proc.wait()
            proc = start_herd(port, control, workers)
    elapsed = time.monotonic() - started
    ctl(control, "stop")
    proc.wait()
    return load, elapsed


def upgrade_time(workers, repeats=5):
    port, tmp = free_port(), tempfile.mkdtemp()
    control = os.path.join(tmp, "control.sock")
    proc = start_herd(port, control, workers)
    times = []
    for _ in range(repeats):
        t = time.monotonic()
        ctl(control, "upgrade")
        times.append(time.monotonic() - t)
    ctl(control, "stop")
    proc.wait()
    return sorted(times)[len(times) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--report", default=os.path.join(ROOT, "docs", "benchmarks-upgrades.md"))
    args = parser.parse_args()
    if not os.access(HERD, os.X_OK):
        raise SystemExit("build first: cargo build --release (or run bench/run, which does)")

    rows = []
    for name, run in [("herd upgrade (rolling)", rolling), ("naive stop and start", naive)]:
        load, elapsed = run(args.rounds, args.clients, args.workers)
        failed = sum(load.failures.values())
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(load.failures.items())) or "-"
        rows.append((name, args.rounds, load.ok, failed, kinds, load.ok / elapsed))
    median = upgrade_time(8)

    header = ("scenario", "rounds", "requests ok", "failed", "failures by kind", "req/s")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, rounds, ok, failed, kinds, rate in rows:
        lines.append(f"| {name} | {rounds} | {ok} | {failed} | {kinds} | {rate:.0f} |")
    table = "\n".join(lines)
    herd_failed = sum(failed for name, _, _, failed, _, _ in rows if name.startswith("herd"))
    verdict = (f"Target: zero failed connections in every herd row: "
               f"**{'met' if herd_failed == 0 else 'missed'}** ({herd_failed} failed).")
    machine = f"{platform.system()} {platform.release()}, {os.cpu_count()} cores"
    print(table)
    print(f"\nrolling upgrade of 8 workers (--ready notify, --max-surge 1): median {median:.2f}s")
    print(verdict)
    with open(args.report, "w") as f:
        f.write(f"""# Benchmark: replacing workers under load

Command: `cargo build --release && python3 bench/upgrades.py --rounds {args.rounds} --clients {args.clients} --workers {args.workers}`

Machine: {machine}; date {time.strftime("%Y-%m-%d")}.

Method: {args.workers} `examples/hello.py` workers on one shared socket (`nonblocking`,
`--ready notify`); {args.clients} client threads each open a new TCP connection per request on
loopback, back to back, and count every failure by kind. In one run, side by side: {args.rounds}
rolling upgrades (`herd upgrade`), then {args.rounds} naive restarts of the same setup (`herd stop`,
then `herd run` again: the listening socket closes and is bound anew, as any restart without
socket handover does). Then the median time of 5 rolling upgrades of 8 workers.

{table}

Rolling upgrade of 8 workers (`--max-surge 1`, each new worker must send `READY=1` before its
predecessor is stopped): median **{median:.2f} s**.

{verdict}

The client is Python, so the request rate measures the client as much as the workers; the
failure counts are the point. Failures in the naive rows are connections refused while no
socket listens, and connections reset when queued connections die with the closed socket.
""")
    print(f"\nwrote {args.report}")


if __name__ == "__main__":
    main()
