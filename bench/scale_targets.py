#!/usr/bin/env python3
"""The scale targets of issue 19, measured on one herd running thousands of native workers
(`crates/herd/examples/hello.rs`, which sends READY=1 right before its accept loop):

1. every worker running and ready within 2 s of herd's start (with `hello` linked statically
   with musl where bench/run built it; the median of 3 starts, and then a start of glibc's
   `hello` alone to compare);
2. herd's own RSS under 16 MiB with them all (and, no target, its CPU use at rest);
3. `herd status` (the CLI, its table and `--json`) answering within 50 ms;
4. a worker killed with SIGKILL replaced and its successor accepting within 10 ms (p50).

Times come from herd's own JSON log events (`timestamp`, microseconds, wall clock) and the
wall clock of this process, never from polling `status`: the start is from `Popen` to the
last worker's `worker_ready`; a replacement is from `kill()` to its successor's
`worker_ready`, i.e. to herd having read the successor's READY=1, sent once it is about to
accept. The figures also split a replacement into kill -> `worker_exited` (herd reaped it)
-> `worker_started` (its successor forked and exec'd) -> `worker_ready`.

The harness shares the machine with what it measures, so while the workers start it reads
herd's log in large chunks and only counts the `worker_ready` lines, parsing none; once there
are as many as workers it parses them all, in order, and the start ends at the event that made
the last slot ready (a slot ready twice counts once). It never sleeps meanwhile: it blocks
reading herd's stderr. Its own CPU time from just before `Popen` until it has counted them all
(its parsing comes after) is a figure too (`harness_cpu_start_s`).

    from scale_targets import measure, verdict_lines
    figures = measure()            # builds nothing: needs target/release/herd and examples/hello
                                   # (and uses the musl one, bench/run's, where it is built)
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
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from common import HERD, RELEASE, TARGET

HELLO = os.path.join(RELEASE, "examples", "hello")
# The same worker linked statically with musl (bench/run builds it where rustup has the target).
STATIC_TARGET = "x86_64-unknown-linux-musl"
HELLO_STATIC = os.path.join(TARGET, STATIC_TARGET, "release", "examples", "hello")

WORKERS = 4096
KILLS = 30
# Starts timed for the 2 s target (the first is `measure`'s own): the verdict reads their
# median, as one start on a shared machine can be slowed by up to half by another's work.
STARTS = 3
STATUS_RUNS = 10
# How long herd's CPU use at rest is measured, all workers ready and idle, in seconds.
REST_S = 5.0
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


READY_MARK = b'"worker_ready"'  # the event's name, however the JSON is spaced


class _Events:
    """herd's JSON log lines, read from its stderr (a pipe) on a thread of their own, in large
    chunks. Until every slot has said READY=1 the lines are only kept and the `worker_ready`
    ones counted by substring, unparsed: the harness takes as little as it can of the CPU the
    start it measures needs. Once as many have been counted as there are workers, the lines are
    parsed in order, and then each as it comes, until the start is over (`start`); the events
    after it are queued for `until`."""

    def __init__(self, stream, workers):
        self.queue = queue.Queue()
        self.other = []
        self.workers = workers
        # (the event that made the last slot ready, the last `worker_started` before it), or
        # None if herd's stderr ended first.
        self.start = None
        self.start_over = threading.Event()
        self.ready = set()
        self.last_start = None
        # This process's CPU times when the count reached the workers (before any parsing).
        self.counted_at = None
        threading.Thread(target=self._read, args=(stream.fileno(),), daemon=True).start()

    def _parse(self, line):
        """The event on `line`, or None (then it is kept as other output)."""
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if isinstance(event, dict) and "event" in event:
            return event
        self.other.append(line.decode(errors="replace").rstrip())  # a worker's, or herd's error
        return None

    def _starting(self, event):
        """Takes an event of the start; True once every slot is ready."""
        if event["event"] == "worker_started":
            self.last_start = event
        elif event["event"] == "worker_ready":
            self.ready.add(event["slot"])
            if len(self.ready) >= self.workers:
                self.start = (event, self.last_start)
                self.start_over.set()
                return True
        return False

    def _take(self, line):
        event = self._parse(line)
        if event is None:
            return
        if self.start is None:
            self._starting(event)
        else:
            self.queue.put(event)

    def _read(self, fd):
        kept, readies, rest = [], 0, b""
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            if readies < self.workers:
                readies += sum(READY_MARK in line for line in lines)
                kept.extend(lines)
                if readies < self.workers:
                    continue
                self.counted_at = os.times()
                lines, kept = kept, []
            for line in lines:
                self._take(line)
        for line in kept + ([rest] if rest else []):
            self._take(line)
        self.start_over.set()
        self.queue.put(None)

    def wait_start(self, timeout):
        """(the event that made the last slot ready, the last `worker_started` before it)."""
        if not self.start_over.wait(timeout):
            raise SystemExit(f"not all {self.workers} workers ready within {timeout} s "
                             f"({len(self.ready)} counted so far)")
        if self.start is None:
            raise SystemExit(f"herd exited before all {self.workers} workers were ready: "
                             f"{' | '.join(self.other[-3:])}")
        return self.start

    def until(self, matches, timeout, what):
        """The first event after the start for which `matches(event)` is true, within
        `timeout` seconds."""
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


def _workers_cpu_s(workers):
    """CPU time the workers have used (their start: idle in `accept` since), in seconds, from
    `/proc/PID/schedstat` (nanoseconds: a worker's start is below `stat`'s clock tick)."""
    total = 0
    for worker in workers:
        try:
            with open(f"/proc/{worker['pid']}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # gone since `status`, or no scheduler statistics in this kernel
    return total / 1e9


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


def default_worker():
    """The worker the targets are measured with: `hello` linked statically with musl where
    bench/run could build it (its start costs a quarter of glibc's here: see docs/scale.md),
    else the glibc one."""
    return HELLO_STATIC if os.access(HELLO_STATIC, os.X_OK) else HELLO


def _linked(worker):
    return "static, musl" if worker == HELLO_STATIC else "glibc" if worker == HELLO else worker


def _start(herd, worker, workers, extra):
    """Starts `herd run -w WORKERS --ready notify -- WORKER` and waits until every worker is
    ready: (herd's process, its control socket, its events, the start's figures)."""
    for tool in (herd, worker):
        if not os.access(tool, os.X_OK):
            raise SystemExit(f"{tool} is missing: cargo build --release -p herd-cli && "
                             "cargo build --release -p herd --example hello")
    _raise_nofile()
    control = os.path.join(tempfile.mkdtemp(prefix="herd-scale-"), "c.sock")
    harness_before = os.times()
    started = time.time()
    proc = subprocess.Popen(
        [herd, "--log-format", "json", "--control", control, "run", "--workers", str(workers),
         "--ready", "notify", "-b", "http=127.0.0.1:0", *extra, "--", worker],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, bufsize=0)
    events = _Events(proc.stderr, workers)
    try:
        last, last_start = events.wait_start(max(60, workers / 20))
    except BaseException:
        _stop(herd, control, proc)
        raise
    harness_after = events.counted_at or os.times()
    return proc, control, events, {
        "workers": workers,
        "worker": _linked(worker),
        "all_ready_s": _stamp(last) - started,
        "all_started_s": _stamp(last_start) - started,
        "herd_cpu_start_s": _cpu_s(proc.pid),
        "cpus": os.cpu_count(),
        "harness_cpu_start_s": sum(after - before for after, before in
                                   zip(harness_after[:2], harness_before[:2])),
    }


def _stop(herd, control, proc):
    subprocess.run([herd, "--control", control, "stop"], capture_output=True)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    # The temporary directory of the control socket (herd removed the socket itself).
    shutil.rmtree(os.path.dirname(control), ignore_errors=True)


def _status(herd, control):
    return json.loads(subprocess.run([herd, "--control", control, "status", "--json"],
                                     capture_output=True, text=True, check=True).stdout)


def measure_start(herd=HERD, worker=HELLO, workers=WORKERS, extra=()):
    """Only the start of `measure`'s herd: every worker ready, and the CPU it took."""
    proc, control, _, figures = _start(herd, worker, workers, extra)
    try:
        figures["workers_cpu_start_s"] = _workers_cpu_s(_status(herd, control)["workers"])
    finally:
        _stop(herd, control, proc)
    return figures


def measure(herd=HERD, worker=None, workers=WORKERS, kills=KILLS, status_runs=STATUS_RUNS,
            extra=(), compare=HELLO, starts=STARTS):
    """Starts `herd run -w WORKERS --ready notify -- WORKER` (with `extra` run options; the
    default worker is `default_worker()`) and measures the four figures; stops herd. Then times
    `starts` - 1 more starts of it alone (`all_ready_s` is the median of all, `starts_s` each)
    and, when `compare` is another worker (glibc's hello), a start of as many of it alone.
    Returns a dict (times in s or ms as named)."""
    worker = worker or default_worker()
    proc, control, events, figures = _start(herd, worker, workers, extra)
    try:
        rss_mib = _rss_mib(proc.pid)
        rest_before = _cpu_s(proc.pid)
        time.sleep(REST_S)  # the measurement itself: herd's CPU while nothing happens
        rest_cpu = (_cpu_s(proc.pid) - rest_before) / REST_S
        table_ms, json_ms, rows = _status_times(herd, control, status_runs)
        status = _status(herd, control)
        workers_cpu_s = _workers_cpu_s(status["workers"])
        victims = [w for w in status["workers"] if w["state"] == "ready"][:kills]
        splits = [_replace_one(events, w["slot"], w["pid"]) for w in victims]
        rss_after_mib = _rss_mib(proc.pid)
        dropped = _status(herd, control)["log_lines_dropped"]
    finally:
        _stop(herd, control, proc)
    median = lambda i: statistics.median(s[i] for s in splits)  # noqa: E731
    figures.update({
        "workers_cpu_start_s": workers_cpu_s,
        "rest_cpu_percent": rest_cpu * 100,
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
    })
    timed = [figures["all_ready_s"]]
    for _ in range(starts - 1):
        try:
            timed.append(measure_start(herd, worker, workers, extra)["all_ready_s"])
        except (SystemExit, OSError, subprocess.SubprocessError, ValueError) as e:
            figures["start_failed"] = str(e)  # the starts timed so far still count
            break
    figures.update(starts_s=timed, all_ready_s=statistics.median(timed))
    if compare and compare != worker and os.access(compare, os.X_OK):
        other = measure_start(herd, compare, workers)
        figures["compared"] = {k: other[k] for k in ("worker", "all_ready_s", "herd_cpu_start_s",
                                                     "workers_cpu_start_s")}
    return figures


def _floor_text(figures):
    """What the workers' own starts took, and the least time herd's and theirs allow on this
    machine's CPUs; empty for figures from before they were measured."""
    workers, cpus = figures.get("workers_cpu_start_s"), figures.get("cpus")
    if workers is None or not cpus:
        return ""
    floor = (workers + figures.get("herd_cpu_start_s", 0.0)) / cpus
    return (f", the workers' own {workers:.2f} s: on {cpus} CPUs their starts and herd's cannot "
            f"take less than {floor:.2f} s")


def _worker_text(figures):
    """` with hello (static, musl)`, or empty for figures from before the worker was named."""
    return f" with hello ({figures['worker']})" if "worker" in figures else ""


def _starts_text(figures):
    """`, median of 3 starts, 1.38-1.52 s`, or empty for one start."""
    timed = figures.get("starts_s", [])
    if len(timed) < 2:
        return ""
    return f", median of {len(timed)} starts, {min(timed):.2f}-{max(timed):.2f} s"


def _compared_text(figures):
    """The start of the other hello, when one was timed too."""
    other = figures.get("compared")
    if not other:
        return ""
    return (f"; the same {figures['workers']} hello ({other['worker']}) ready in "
            f"{other['all_ready_s']:.2f} s, their own starts {other['workers_cpu_start_s']:.2f} s of "
            f"CPU, herd's {other['herd_cpu_start_s']:.2f} s")


def verdict_lines(figures):
    """One line per target: `- <target>: **met**|**missed** (<figure>)`, as bench/run collects."""
    n = figures["workers"]
    met = lambda ok: "**met**" if ok else "**missed**"  # noqa: E731
    status_ms = max(figures["status_table_ms"], figures["status_json_ms"])
    return [
        f"- {n} native workers running and ready within {READY_LIMIT_S:g} s of herd's start: "
        f"{met(figures['all_ready_s'] < READY_LIMIT_S)} ({figures['all_ready_s']:.2f} s"
        f"{_worker_text(figures)}{_starts_text(figures)}; "
        f"{'in the first, ' if len(figures.get('starts_s', [])) > 1 else ''}herd's own "
        f"CPU {figures.get('herd_cpu_start_s', float('nan')):.2f} s, this harness's "
        f"{figures.get('harness_cpu_start_s', float('nan')):.2f} s{_floor_text(figures)}"
        f"{_compared_text(figures)})",
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
