#!/usr/bin/env python3
"""Scale and handoff benchmark (issue 7, scenarios 5 and 6).

Runs herd with a small native worker (`crates/herd/examples/hello.rs`, which reports
READY=1), scales it 1 -> 64 -> 256 at runtime and measures how long until every worker is
ready, herd's own RSS and CPU with 1, 64 and 256 workers, idle and under an open-loop load of
2000 new connections/s (`bench/loadgen`), and the latency of fetching the sockets over the
control socket (the `sockets` command that `herd attach` uses, fds by SCM_RIGHTS). Then issue
19's scale targets at 4096 workers, on a herd of their own (bench/scale_targets.py).

    python3 bench/scale.py   (builds what it needs: herd, herd-loadgen and the examples, release)

Prints the tables and writes its report (see bench/run).
"""
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

from common import HERD, LOADGEN, RELEASE, ROOT
from common import report as report_path
from herdctl import request
import scale_targets

HELLO = os.path.join(RELEASE, "examples", "hello")
TICKS = os.sysconf("SC_CLK_TCK")
WINDOW = 3.0  # seconds per CPU measurement
HANDOFFS = 1000


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def cpu_percent(pid, during):
    """herd's CPU use (% of one core) while `during()` runs for about WINDOW seconds."""
    before, t = cpu_ticks(pid), time.monotonic()
    during()
    return 100.0 * (cpu_ticks(pid) - before) / TICKS / (time.monotonic() - t)


def wait_ready(control, n, timeout=120):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        s, _ = request(control, {"command": "status"})
        if s["ready"] == n and s["running"] == n:
            return time.monotonic() - start
        time.sleep(0.005)
    raise SystemExit(f"{n} workers were not ready within {timeout} s")


def handoff_latency(control):
    samples = []
    for _ in range(HANDOFFS):
        t = time.perf_counter()
        result, fds = request(control, {"command": "sockets"}, fds=True)
        samples.append(time.perf_counter() - t)
        for fd in fds:
            os.close(fd)
        assert len(fds) == len(result["sockets"])
    samples.sort()
    return samples[len(samples) // 2], samples[int(len(samples) * 0.99)]


def build():
    """Builds herd, the load generator and the worker examples (release), as cargo needs."""
    for args in (["-p", "herd-cli", "-p", "herd-loadgen"],
                 ["-p", "herd", "--example", "hello"]):
        subprocess.run(["cargo", "build", "--quiet", "--release", *args], cwd=ROOT, check=True)


def main():
    build()
    control = os.path.join(tempfile.mkdtemp(), "c.sock")
    proc = subprocess.Popen(
        [HERD, "--log-level", "warn", "--control", control, "run", "--workers", "1", "--ready", "notify",
         "-b", "http=127.0.0.1:0", "--", HELLO],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(control) and time.monotonic() < deadline:
            time.sleep(0.01)
        wait_ready(control, 1)
        status, _ = request(control, {"command": "status"})
        address = status["sockets"][0]["address"]
        rows = []
        for n in (1, 64, 256):
            took = None
            if n > 1:
                t = time.monotonic()
                request(control, {"command": "scale", "workers": n})
                wait_ready(control, n)
                took = time.monotonic() - t
            idle = cpu_percent(proc.pid, lambda: time.sleep(WINDOW))
            rss_idle = rss_kib(proc.pid)
            load = {}

            def run_load():
                out = subprocess.run([LOADGEN, address, "2000", str(WINDOW), "--threads", "32"],
                                     capture_output=True, text=True, check=True)
                load.update(json.loads(out.stdout))
            busy = cpu_percent(proc.pid, run_load)
            rows.append((n, took, rss_idle, rss_kib(proc.pid), idle, busy, load["requests"] - load["ok"]))
        p50, p99 = handoff_latency(control)
    finally:
        subprocess.run([HERD, "--control", control, "stop"], capture_output=True)
        proc.wait(timeout=60)

    table = ["| workers | scale-up to all ready | herd RSS idle | herd RSS under load | herd CPU idle | herd CPU under load | failed requests |",
             "|---|---|---|---|---|---|---|"]
    for n, took, rss_idle, rss_load, idle, busy, failed in rows:
        took = f"{took:.2f} s" if took is not None else "(start)"
        table.append(f"| {n} | {took} | {rss_idle / 1024:.1f} MiB | {rss_load / 1024:.1f} MiB | {idle:.1f}% | {busy:.1f}% | {failed} |")
    handoff = ["| fetches | p50 | p99 |", "|---|---|---|", f"| {HANDOFFS} | {p50 * 1e6:.0f} µs | {p99 * 1e6:.0f} µs |"]
    rss64 = next(r for r in rows if r[0] == 64)[2] / 1024
    idle_max = max(r[4] for r in rows)
    verdict = (f"Targets: supervisor RSS under 10 MiB with 64 workers: **{'met' if rss64 < 10 else 'missed'}** "
               f"({rss64:.1f} MiB); no measurable CPU when idle: **{'met' if idle_max < 1 else 'missed'}** "
               f"(at most {idle_max:.1f}% of a core, the resolution is one clock tick over {WINDOW:.0f} s).")
    targets = scale_targets.measure()
    big = targets_table(targets)
    verdicts = scale_targets.verdict_lines(targets)
    print("\n".join(table), "\n".join(handoff), verdict, "\n".join(big), "\n".join(verdicts), sep="\n\n")
    report = f"""# Benchmark: scale and socket handoff

Command: `python3 bench/scale.py` (it builds herd, `bench/loadgen` and the example in release mode first)

Machine: Linux {platform.release()}, {os.cpu_count()} cores; date {time.strftime('%Y-%m-%d')}.

Method: herd runs `crates/herd/examples/hello.rs` (a single-threaded native worker that sends
READY=1) with `--ready notify`, starting with one worker; `scale` over the control socket
raises it to 64 and then 256, timed until `status` shows every worker running and ready. At
each size herd's RSS (`VmRSS`) and CPU (utime + stime from `/proc/PID/stat`, as % of one core)
are read over {WINDOW:.0f} s idle and over {WINDOW:.0f} s of open-loop load at 2000 new
connections/s (`bench/loadgen`). The handoff is the `sockets` command that `herd attach` and
`herd::Sockets::from_control` use: connect to the control socket, ask, receive the listening
socket by `SCM_RIGHTS`; {HANDOFFS} times from Python, so the numbers include the client's own cost.

{chr(10).join(table)}

{chr(10).join(handoff)}

{verdict}

## {targets["workers"]} workers: issue 19's scale targets

Method (bench/scale_targets.py): a herd of its own runs {targets["workers"]} `hello` workers ({targets.get("worker", "glibc")}; `run -w
{targets["workers"]} --ready notify`, JSON log on a pipe, which the harness reads in large chunks and
only counts `worker_ready` lines in until there are as many as workers, parsing them after).
Ready is from `Popen` to the last worker's `worker_ready` event (herd's own timestamp: it read
the worker's READY=1, which hello sends right before its accept loop), with herd's own CPU time
and the harness's meanwhile, and the workers' own CPU time once all are ready (their exec and
start-up, from `/proc/PID/schedstat`): herd's and theirs over the machine's CPUs are the least
time the start can take here; RSS is herd's `VmRSS` once all are ready (the larger of
before and after the steps below); herd's CPU at rest is its CPU time over
{scale_targets.REST_S:g} s with every worker ready and idle, in percent of one CPU (it samples
every worker's CPU time and memory each second); `herd status` is the CLI's wall time (its table, then
`--json`), median of {scale_targets.STATUS_RUNS} each; then {targets["kills"]} workers, one at a time, get SIGKILL and
the time from `kill()` to their successor's `worker_ready` is the replacement (split at herd's
`worker_exited`, when it reaped the worker, and `worker_started`, when the successor had
exec'd). Load average at the end: {" ".join(f"{x:.1f}" for x in targets["load_average"])}.

{chr(10).join(big)}

{chr(10).join(verdicts)}
"""
    with open(report_path("scale"), "w") as f:
        f.write(report)
    print(f"\nwrote {report_path('scale')}")


def targets_table(t):
    """The scale targets' figures as a table."""
    rest = t.get("rest_cpu_percent")
    rest = "-" if rest is None else f"{rest:.1f}%"
    return ["| workers | all started / all ready after start | herd RSS | herd CPU at rest | "
            "`herd status` (table / `--json`) | "
            "kill -> successor ready, p50 (max) | reaped / successor exec'd, p50 | log lines lost |",
            "|---|---|---|---|---|---|---|---|",
            f"| {t['workers']} | {t['all_started_s']:.2f} s / {t['all_ready_s']:.2f} s | {t['rss_mib']:.1f} MiB | "
            f"{rest} | "
            f"{t['status_table_ms']:.0f} ms / {t['status_json_ms']:.0f} ms | {t['replace_p50_ms']:.1f} ms "
            f"({t['replace_max_ms']:.1f} ms) | {t['reaped_p50_ms']:.1f} ms / {t['respawned_p50_ms']:.1f} ms "
            f"| {t['log_lines_dropped']} |"]


if __name__ == "__main__":
    sys.exit(main())
