#!/usr/bin/env python3
"""The scale targets of issue 19, measured on one herd running thousands of native workers
(`crates/herd/examples/hello.rs`, which sends READY=1 right before its accept loop):

1. every worker running and ready within 2 s of herd's start;
2. herd's own RSS under 16 MiB with them all;
3. `herd status` (the CLI, its table and `--json`) answering within 50 ms;
4. a worker killed with SIGKILL replaced and its successor accepting within 10 ms (p50).

Times come from herd's own JSON log events (`timestamp`, microseconds, wall clock) and the
wall clock of this process, never from polling `status`: the start is from `Popen` to the
last worker's `worker_ready`; a replacement is from `kill()` to its successor's
`worker_ready`, i.e. to herd having read the successor's READY=1, sent once it is about to
accept. The figures also split a replacement into kill -> `worker_exited` (herd reaped it)
-> `worker_started` (its successor forked and exec'd) -> `worker_ready`.

    from scale_targets import measure, verdict_lines
    figures = measure()            # builds nothing: needs target/release/herd and examples/hello
    print("\\n".join(verdict_lines(figures)))

    python3 bench/scale_targets.py [--workers N] [--kills N]   (prints the figures and verdicts)

It raises its own soft open-file limit to the hard one first (herd raises its own as well;
the workers inherit the caller's); it needs about 3 fds per worker in herd, a process per
worker (`ulimit -u`, `kernel.pid_max`, `kernel.threads-max`) and about 1 MiB of memory per
hello worker (see docs/scale.md).
"""
import argparse
import datetime
import json
import os
import queue
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERD = os.path.join(ROOT, "target", "release", "herd")
HELLO = os.path.join(ROOT, "target", "release", "examples", "hello")

WORKERS = 4096
KILLS = 30
STATUS_RUNS = 10
# The targets: (figure, limit, what it says).
READY_LIMIT_S = 2.0
RSS_LIMIT_MIB = 16.0
STATUS_LIMIT_MS = 50.0
REPLACE_LIMIT_MS = 10.0


def _stamp(event):
    """An event's `timestamp` (RFC 3339, UTC) in seconds since the epoch."""
    text = event["timestamp"].rstrip("Z")
    parsed = datetime.datetime.fromisoformat(text[:26] if "." in text else text)
    return parsed.replace(tzinfo=datetime.timezone.utc).timestamp()


class _Events:
    """herd's JSON log lines, read from its stderr on a thread of their own."""

    def __init__(self, stream):
        self.queue = queue.Queue()
        self.other = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream):
        for line in stream:
            try:
                event = json.loads(line)
            except ValueError:
                self.other.append(line.rstrip())  # a worker's own output, or herd's last error
                continue
            if isinstance(event, dict) and "event" in event:
                self.queue.put(event)
        self.queue.put(None)

    def until(self, matches, timeout, what):
        """The first event for which `matches(event)` is true, within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                event = self.queue.get(timeout=max(left, 0.001))
            except queue.Empty:
                event = False
            if event is None:
                raise SystemExit(f"herd exited while waiting for {what}: {' | '.join(self.other[-3:])}")
            if event is False:
                raise SystemExit(f"no {what} within {timeout} s")
            if matches(event):
                return event


def _rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return kib / 1024


def _cpu_s(pid):
    """CPU time `pid` has used (utime + stime), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _status_times(herd, control, runs):
    """Median wall time of `herd status` and of `herd status --json`, in ms, and the rows the
    table showed (to check it listed every worker)."""
    times = {"table": [], "json": []}
    rows = 0
    for _ in range(runs):
        for kind, extra in (("table", []), ("json", ["--json"])):
            t = time.perf_counter()
            out = subprocess.run([herd, "--control", control, "status", *extra],
                                 capture_output=True, text=True)
            times[kind].append((time.perf_counter() - t) * 1000)
            if out.returncode != 0:
                raise SystemExit(f"herd status failed: {out.stderr.strip()}")
            if kind == "json":
                rows = len(json.loads(out.stdout)["workers"])
    return statistics.median(times["table"]), statistics.median(times["json"]), rows


def _replace_one(events, slot, pid, timeout=10):
    """Kills `pid` (slot `slot`) and returns (kill -> reaped, -> successor started, -> its
    READY=1) in ms, from the wall clock at kill() and herd's event timestamps."""
    killed = time.time()
    os.kill(pid, signal.SIGKILL)
    exited = events.until(lambda e: e["event"] == "worker_exited" and e.get("pid") == pid,
                          timeout, f"worker_exited of pid {pid}")
    started = events.until(lambda e: e["event"] == "worker_started" and e.get("slot") == slot,
                           timeout, f"a successor in slot {slot}")
    ready = events.until(lambda e: e["event"] == "worker_ready" and e.get("pid") == started["pid"],
                         timeout, f"worker_ready of pid {started['pid']}")
    return tuple((_stamp(e) - killed) * 1000 for e in (exited, started, ready))


def measure(herd=HERD, worker=HELLO, workers=WORKERS, kills=KILLS, status_runs=STATUS_RUNS,
            extra=()):
    """Starts `herd run -w WORKERS --ready notify -- WORKER` (with `extra` run options) and
    measures the four figures; stops herd. Returns a dict (times in s or ms as named)."""
    for tool in (herd, worker):
        if not os.access(tool, os.X_OK):
            raise SystemExit(f"{tool} is missing: cargo build --release -p herd-cli && "
                             "cargo build --release -p herd --example hello")
    _raise_nofile()
    control = os.path.join(tempfile.mkdtemp(prefix="herd-scale-"), "c.sock")
    started = time.time()
    proc = subprocess.Popen(
        [herd, "--log-format", "json", "--control", control, "run", "--workers", str(workers),
         "--ready", "notify", "-b", "http=127.0.0.1:0", *extra, "--", worker],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        bufsize=1 << 20)
    events = _Events(proc.stderr)
    try:
        ready, last, last_start = set(), None, None
        timeout = max(60, workers / 20)
        while len(ready) < workers:
            last = events.until(lambda e: e["event"] in ("worker_ready", "worker_started"), timeout,
                                f"{workers} workers ready")
            if last["event"] == "worker_started":
                last_start = last
            else:
                ready.add(last["slot"])
        all_ready_s = _stamp(last) - started
        cpu_start_s = _cpu_s(proc.pid)
        rss_mib = _rss_mib(proc.pid)
        table_ms, json_ms, rows = _status_times(herd, control, status_runs)
        status = json.loads(subprocess.run([herd, "--control", control, "status", "--json"],
                                           capture_output=True, text=True, check=True).stdout)
        victims = [w for w in status["workers"] if w["state"] == "ready"][:kills]
        splits = [_replace_one(events, w["slot"], w["pid"]) for w in victims]
        rss_after_mib = _rss_mib(proc.pid)
        dropped = json.loads(subprocess.run([herd, "--control", control, "status", "--json"],
                                            capture_output=True, text=True,
                                            check=True).stdout)["log_lines_dropped"]
    finally:
        subprocess.run([herd, "--control", control, "stop"], capture_output=True)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    median = lambda i: statistics.median(s[i] for s in splits)  # noqa: E731
    return {
        "workers": workers,
        "all_ready_s": all_ready_s,
        "all_started_s": _stamp(last_start) - started,
        "herd_cpu_start_s": cpu_start_s,
        "rss_mib": max(rss_mib, rss_after_mib),
        "rss_ready_mib": rss_mib,
        "status_table_ms": table_ms,
        "status_json_ms": json_ms,
        "status_rows": rows,
        "kills": len(splits),
        "replace_p50_ms": median(2),
        "replace_max_ms": max(s[2] for s in splits),
        "reaped_p50_ms": median(0),
        "respawned_p50_ms": median(1),
        "log_lines_dropped": dropped,
        "load_average": os.getloadavg(),
    }


def verdict_lines(figures):
    """One line per target: `- <target>: **met**|**missed** (<figure>)`, as bench/run collects."""
    n = figures["workers"]
    met = lambda ok: "**met**" if ok else "**missed**"  # noqa: E731
    status_ms = max(figures["status_table_ms"], figures["status_json_ms"])
    return [
        f"- {n} native workers running and ready within {READY_LIMIT_S:g} s of herd's start: "
        f"{met(figures['all_ready_s'] < READY_LIMIT_S)} ({figures['all_ready_s']:.2f} s; herd's own "
        f"CPU meanwhile {figures.get('herd_cpu_start_s', float('nan')):.2f} s)",
        f"- herd's RSS under {RSS_LIMIT_MIB:g} MiB with {n} workers: "
        f"{met(figures['rss_mib'] < RSS_LIMIT_MIB)} ({figures['rss_mib']:.1f} MiB, the larger of "
        f"once all were ready ({figures.get('rss_ready_mib', figures['rss_mib']):.1f} MiB) and after "
        f"the `herd status` calls and kills)",
        f"- `herd status` within {STATUS_LIMIT_MS:g} ms at {n} workers (median of the table and "
        f"of `--json`, the slower): {met(status_ms < STATUS_LIMIT_MS)} "
        f"({figures['status_table_ms']:.0f} ms table, {figures['status_json_ms']:.0f} ms `--json`)",
        f"- a worker killed (SIGKILL) replaced and its successor accepting (its READY=1) within "
        f"{REPLACE_LIMIT_MS:g} ms, p50 of {figures['kills']}: "
        f"{met(figures['replace_p50_ms'] < REPLACE_LIMIT_MS)} ({figures['replace_p50_ms']:.1f} ms; "
        f"reaped at {figures['reaped_p50_ms']:.1f} ms, successor exec'd at "
        f"{figures['respawned_p50_ms']:.1f} ms; slowest {figures['replace_max_ms']:.1f} ms)",
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=WORKERS)
    parser.add_argument("--kills", type=int, default=KILLS)
    args = parser.parse_args()
    figures = measure(workers=args.workers, kills=args.kills)
    print(json.dumps(figures, indent=1))
    print("\n".join(verdict_lines(figures)))


if __name__ == "__main__":
    sys.exit(main())
