#!/usr/bin/env python3
"""Benchmark and test (issue 17): a fleet behind a real load balancer.

Three "hosts" as network namespaces on this machine (bench/netns.py), each running
`herd run -w 3 --health ADDR:9000 --ready-min 2 --drain-delay D` with examples/hello.py
workers, and Debian's HAProxy in an `lb` namespace health-checking each herd's `/readyz`
(bench/haproxy.py). Under continuous load through HAProxy (`herd-loadgen`, open loop, a new
connection per request, in the `lb` namespace), three scenarios:

1. restart: a rolling restart, one host at a time: `herd stop` (the drain delay turns
   /readyz to 503, HAProxy takes the host out, then herd stops), start again, wait until
   HAProxy has it back;
2. upgrade: `herd upgrade` on each host in turn;
3. kill: one herd killed with SIGKILL (its workers die with it), HAProxy takes the host out,
   it is started again and comes back; in the full run also through the frontend that retries
   GETs a dead host took (`kill, GET retried`).

Every step waits for events (herd status, HAProxy's stats socket), never for a fixed time.
Everything is torn down at the end, also after an error or SIGTERM; a run killed outright is
cleaned up by the next one (or `--cleanup`). Needs root, haproxy and iproute2.

    python3 bench/fleet.py [--quick]      (bench/run fleet builds herd and herd-loadgen first)
    python3 bench/fleet.py --json --herd PATH --loadgen PATH   (the test: results as JSON)
    python3 bench/fleet.py --cleanup      (removes what a killed earlier run left)
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time

import haproxy
import netns
from common import HELLO, HERD, LOADGEN, machine, report
from herdctl import status

WORKERS = 3
READY_MIN = 2
PORT = 8000
HEALTH_PORT = 9000
TIMEOUT = 30
# (load in requests/s, HAProxy's check interval in ms, herd's --drain-delay): the drain delay
# covers HAProxy's slowest reaction, inter + fastinter + the check timeout (1 s), with room for
# a loaded machine.
SETTINGS = {"quick": (200, 200, "2s"), "full": (1000, 500, "3s")}


def say(*args):
    print(*args, file=sys.stderr, flush=True)


def wait_for(what, check, timeout=TIMEOUT):
    """Polls `check()` until it returns something true, and returns that; a timeout exits
    with what the last call saw (a check may return (False, seen) to say what it saw)."""
    deadline, seen = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            got = check()
        except OSError as e:
            got = (False, str(e))
        if isinstance(got, tuple):
            got, seen = got
        if got:
            return got
        time.sleep(0.01)
    raise SystemExit(f"timed out after {timeout} s waiting for {what}; last seen: {seen}")


class Host:
    """One host: a herd in namespace `namespace` serving hello.py on ADDRESS:PORT."""

    def __init__(self, net, index, herd, drain):
        self.net, self.herd, self.drain = net, herd, drain
        self.name = f"host{index + 1}"
        self.namespace, self.address = net.hosts[index], net.addresses[index]
        self.control = os.path.join(net.dir, f"{self.name}.sock")
        self.log = os.path.join(net.dir, f"{self.name}.log")
        self.proc = None

    def start(self):
        args = [self.herd, "--log-level", "warn", "--control", self.control, "run",
                "-w", str(WORKERS), "--ready", "notify", "--health", f"{self.address}:{HEALTH_PORT}",
                "--ready-min", str(READY_MIN), "--drain-delay", self.drain,
                "-b", f"http={self.address}:{PORT},nonblocking", "--", sys.executable, HELLO]
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(self.net.exec(self.namespace, args), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=log)
        return self

    def ready(self):
        def check():
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name}'s herd exited: {self.last_log()}")
            s = status(self.control)
            return s["pid"] == self.proc.pid and s["ready"] == WORKERS == s["running"], s
        wait_for(f"{self.name}: {WORKERS} ready workers", check)
        return self

    def ctl(self, *args):
        """`herd ARGS` against this host's herd, started (not waited for)."""
        return subprocess.Popen([self.herd, "--log-level", "error", "--control", self.control, *args],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)

    def last_log(self):
        with open(self.log) as f:
            return " | ".join(f.read().splitlines()[-5:])


class Fleet:
    """The network, HAProxy in `lb` and the hosts' herds, all started and checked in."""

    def __init__(self, net, herd, inter_ms, drain):
        self.net, self.inter_ms = net, inter_ms
        self.socket = os.path.join(net.dir, "haproxy.sock")
        self.hosts = [Host(net, i, herd, drain) for i in range(len(net.hosts))]
        conf = os.path.join(net.dir, "haproxy.cfg")
        with open(conf, "w") as f:
            f.write(haproxy.config(net.dir, netns.LB_ADDRESS, [(h.name, h.address) for h in self.hosts],
                                   PORT, HEALTH_PORT, inter_ms))
        check = subprocess.run(["haproxy", "-c", "-q", "-f", conf], capture_output=True, text=True)
        if check.returncode != 0:
            raise SystemExit(f"haproxy -c: {check.stdout}{check.stderr}")
        for host in self.hosts:
            host.start()
        for host in self.hosts:
            host.ready()
        self.lb_log = os.path.join(net.dir, "haproxy.log")
        with open(self.lb_log, "w") as log:
            self.lb = subprocess.Popen(net.exec(net.lb, ["haproxy", "-db", "-f", conf]),
                                       stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        for host in self.hosts:
            for backend in haproxy.FRONTENDS:
                self.wait_state(host, "UP", backend)

    def row(self, host, backend="hosts"):
        return haproxy.stats(self.socket)[(backend, host.name)]

    def state(self, host, backend="hosts"):
        return self.row(host, backend)["status"]

    def wait_state(self, host, want, backend="hosts"):
        """Waits until HAProxy's backend has `host` in state `want` (`UP` or `DOWN`; a
        server going down shows `UP 1/2` first)."""
        def check():
            if self.lb.poll() is not None:
                with open(self.lb_log) as f:
                    raise SystemExit(f"haproxy exited: {' | '.join(f.read().splitlines()[-5:])}")
            got = self.state(host, backend)
            return got == want, f"{host.name} is {got!r} in {backend}"
        wait_for(f"HAProxy to see {host.name} {want} in {backend}", check)

    def errors(self):
        """HAProxy's response errors so far, per host (backends added)."""
        rows = haproxy.stats(self.socket)
        return {h.name: sum(haproxy.number(rows[(b, h.name)], "eresp") for b in haproxy.FRONTENDS)
                for h in self.hosts}

    def logged(self, since):
        """What HAProxy logged after byte `since` of its log (servers going up or down, and
        requests that did not end in a 2xx), and where the log ends."""
        with open(self.lb_log, "rb") as f:
            f.seek(since)
            text = f.read()
        lines = [line for line in text.decode(errors="replace").splitlines()
                 if line.startswith("Server ") or re.search(r"\] \S+ \S+ \S+ [^2]\d\d ", line)]
        return lines, since + len(text)

    def served(self, frontend):
        """Requests HAProxy's frontend has taken so far."""
        return haproxy.number(haproxy.stats(self.socket)[(frontend, "FRONTEND")], "stot")


class Load:
    """herd-loadgen at `rate` requests/s through HAProxy's frontend for `backend`, for as long
    as the `with` block runs: it starts once HAProxy has seen requests and ends once HAProxy has
    seen more after the block's changes."""

    def __init__(self, fleet, loadgen, rate, backend="hosts"):
        self.fleet, self.loadgen, self.rate = fleet, loadgen, rate
        self.frontend = "web" if backend == "hosts" else "web_retry"
        self.port = haproxy.FRONTENDS[backend]

    def more_requests(self):
        start, n = self.fleet.served(self.frontend), max(10, self.rate // 10)
        wait_for(f"{n} requests through HAProxy", lambda: self.fleet.served(self.frontend) >= start + n)

    def __enter__(self):
        args = [self.loadgen, f"{netns.LB_ADDRESS}:{self.port}", str(self.rate), "3600", "--threads", "64",
                "--until-eof", "--timeout", "5"]
        self.proc = subprocess.Popen(self.fleet.net.exec(self.fleet.net.lb, args), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.more_requests()
        return self

    def __exit__(self, kind, *exc):
        if kind is None:
            self.more_requests()
        out, _ = self.proc.communicate(timeout=60)
        self.result = json.loads(out) if kind is None else None


def since(t):
    return round(time.monotonic() - t, 2)


def restart(fleet, host):
    """`herd stop` (drain first), then start again: when HAProxy took the host out, whether
    herd still served then, when herd was gone, when the host was back."""
    t, stop = time.monotonic(), host.ctl("stop")
    fleet.wait_state(host, "DOWN")
    out, serving = since(t), host.proc.poll() is None
    host.proc.wait(timeout=TIMEOUT)
    if stop.wait(timeout=TIMEOUT) != 0:
        raise SystemExit(f"herd stop on {host.name}: {stop.stderr.read().strip()}")
    gone, t = since(t), time.monotonic()
    host.start().ready()
    fleet.wait_state(host, "UP")
    return {"host": host.name, "out_s": out, "serving_when_out": serving, "gone_s": gone, "back_s": since(t)}


def upgrade(fleet, host):
    """`herd upgrade`, watching the states HAProxy gives the host meanwhile (`UP 1/2`: a
    check failed, the host is still in) and counting its failed checks."""
    before = fleet.row(host)
    t, up, states = time.monotonic(), host.ctl("upgrade"), set()
    while up.poll() is None:
        states.add(fleet.state(host))
        time.sleep(0.01)
    if up.returncode != 0:
        raise SystemExit(f"herd upgrade on {host.name}: {up.stderr.read().strip()}")
    host.ready()
    after = fleet.row(host)
    return {"host": host.name, "took_s": since(t), "states": sorted(states | {after["status"]}),
            "failed_checks": haproxy.number(after, "chkfail") - haproxy.number(before, "chkfail"),
            "last_check": after["check_status"]}


def kill(fleet, host, backend):
    """SIGKILL to the host's herd; when HAProxy took it out, what HAProxy counted on that
    server meanwhile (`eresp`: requests the host took and never answered), when it was back."""
    before = fleet.row(host, backend)
    t = time.monotonic()
    os.kill(host.proc.pid, signal.SIGKILL)
    host.proc.wait(timeout=TIMEOUT)
    fleet.wait_state(host, "DOWN", backend)
    out, after = since(t), fleet.row(host, backend)
    t = time.monotonic()
    host.start().ready()
    fleet.wait_state(host, "UP", backend)
    counted = {k: haproxy.number(after, k) - haproxy.number(before, k) for k in ("eresp", "econ", "wretr", "wredis")}
    return {"host": host.name, "backend": backend, "out_s": out, "back_s": since(t),
            "in_flight_before": haproxy.number(before, "scur"), **counted}


def scenarios(fleet, loadgen, rate, quick):
    """Runs every scenario under its own load; returns {name: {"load": ..., "steps": [...]}}."""
    plan = [("restart", "hosts", lambda: [restart(fleet, h) for h in fleet.hosts]),
            ("upgrade", "hosts", lambda: [upgrade(fleet, h) for h in fleet.hosts]),
            ("kill", "hosts", lambda: [kill(fleet, fleet.hosts[0], "hosts")])]
    if not quick:
        plan.append(("kill, GET retried", "hosts_retry", lambda: [kill(fleet, fleet.hosts[1], "hosts_retry")]))
    results, logged = {}, fleet.logged(0)[1]
    for name, backend, run in plan:
        say(f"-- {name}")
        t, errors = time.monotonic(), fleet.errors()
        with Load(fleet, loadgen, rate, backend) as load:
            steps = run()
        lines, logged = fleet.logged(logged)
        errors = {host: n - errors[host] for host, n in fleet.errors().items()}
        results[name] = {"load": load.result, "steps": steps, "seconds": since(t), "response_errors": errors,
                         "haproxy_log": lines[-20:]}
        say(json.dumps(results[name]))
    return results


def table(results):
    """The scenarios as a markdown table: requests, failures by kind, p99."""
    header = ("scenario", "seconds", "requests", "failed", "refused", "reset", "eof", "timeout",
              "HTTP errors", "p99 ms")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, r in results.items():
        load = r["load"]
        codes = ", ".join(f"{n} × {code}" for code, n in load["http_status"].items()) or "0"
        lines.append(f"| {name} | {r['seconds']:.1f} | {load['requests']} | **{load['requests'] - load['ok']}** | "
                     f"{load['refused']} | {load['reset']} | {load['eof']} | {load['timeout']} | {codes} | "
                     f"{load['p99_us'] / 1000:.1f} |")
    return "\n".join(lines)


def step_table(results):
    """Each step of each scenario: how long until HAProxy took the host out, herd was gone,
    the host was back."""
    lines = ["| scenario | host | out of HAProxy after | herd gone after | back in HAProxy after | notes |",
             "|---|---|---|---|---|---|"]
    for name, r in results.items():
        for s in r["steps"]:
            if "took_s" in s:
                kept = all(state.startswith("UP") for state in s["states"])
                lines.append(f"| {name} | {s['host']} | {'stayed in' if kept else '**taken out**'} | | | "
                             f"upgrade took {s['took_s']:.2f} s; HAProxy saw it {', '.join(s['states'])}; "
                             f"{s['failed_checks']} failed checks |")
            elif "gone_s" in s:
                serving = "still serving" if s["serving_when_out"] else "already stopped"
                lines.append(f"| {name} | {s['host']} | {s['out_s']:.2f} s (herd {serving}) | {s['gone_s']:.2f} s | "
                             f"{s['back_s']:.2f} s after the start | |")
            else:
                lines.append(f"| {name} | {s['host']} | {s['out_s']:.2f} s | at once (SIGKILL) | "
                             f"{s['back_s']:.2f} s after the start | HAProxy on that host: {s['in_flight_before']} "
                             f"connections open before the kill, {s['eresp']} response errors, {s['econ']} "
                             f"connection errors, {s['wretr']} retries, {s['wredis']} redispatched |")
    return "\n".join(lines)


def verdicts(results):
    """The targets: zero failures in the restart and upgrade, and a kill costs no more than
    the requests the dead host had taken (HAProxy's `eresp` on it)."""
    failed = {name: r["load"]["requests"] - r["load"]["ok"] for name, r in results.items()}
    calm = failed["restart"] + failed["upgrade"]
    lost = results["kill"]["response_errors"][results["kill"]["steps"][0]["host"]]
    out = [f"- Zero failed requests through a rolling restart and a rolling upgrade of the fleet: "
           f"**{'met' if calm == 0 else 'missed'}** ({calm} failed).",
           f"- A SIGKILL costs at most the requests the dead host had taken: "
           f"**{'met' if failed['kill'] <= lost else 'missed'}** ({failed['kill']} failed; "
           f"HAProxy counted {lost} response errors on that host)."]
    return "\n".join(out)


def write_report(path, results, args, rate, inter_ms, drain):
    command = "python3 bench/fleet.py" + (" --quick" if args.quick else "")
    with open(path, "w") as f:
        f.write(f"""# Benchmark: a fleet behind HAProxy

Command: `{command}` (or `bench/run fleet`, which builds first); needs root.

Machine: {machine()}; HAProxy {haproxy_version()}.

Method: three hosts as network namespaces on this machine, joined by veth pairs to a bridge in
a fourth (`lb`) that holds HAProxy and the load generator. Each host runs `herd run -w {WORKERS}
--ready-min {READY_MIN} --drain-delay {drain} --health ADDR:{HEALTH_PORT}` with
`examples/hello.py` workers (`nonblocking`, `--ready notify`). HAProxy checks `GET /readyz`
every {inter_ms} ms (2 failures take a host out, 2 successes bring it back), retries a
failed connection 3 times with a redispatch to another host each time ([docs/fleet.md](fleet.md)
has the whole configuration and why). `herd-loadgen` opens a new connection per request at {rate}
requests/s through HAProxy (open loop; any answer but a 2xx is a failure, by status code), for
exactly as long as each scenario. Every step waits for events (herd status, HAProxy's stats
socket), never for a fixed time.

{table(results)}

{step_table(results)}

{verdicts(results)}

Reading it: in a rolling restart, `herd stop` first turns `/readyz` to 503 and keeps serving
for the drain delay; HAProxy takes the host out well within it (the "out" column, herd still
serving), so no new request reaches a herd that is stopping, and the ones it holds finish. An
upgrade never closes the listening socket and keeps at least `--ready-min` workers ready, so
HAProxy never takes the host out. A SIGKILL gives no warning: the requests the host had taken
are lost (HAProxy answers them 502), connections refused afterwards are retried elsewhere, and
HAProxy takes the host out after two failed checks. With `retry-on empty-response` for GETs
(the `kill, GET retried` row, full run only) HAProxy sends those lost GETs again to another
host, for applications whose GETs may run twice.
""")


def haproxy_version():
    out = subprocess.run(["haproxy", "-v"], capture_output=True, text=True).stdout.split()
    return out[2] if len(out) > 2 else "?"


def die_with_parent():
    """SIGTERM (so the cleanup runs) when the process that started this one dies: a test
    that times out or is killed."""
    import ctypes
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the test's settings: less load, shorter checks")
    parser.add_argument("--json", action="store_true", help="print the results as JSON, write no report")
    parser.add_argument("--cleanup", action="store_true", help="only remove what killed earlier runs left")
    parser.add_argument("--herd", default=HERD)
    parser.add_argument("--loadgen", default=LOADGEN)
    parser.add_argument("--report", default=report("fleet"))
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/fleet.py needs root: it makes network namespaces")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("fleet.py: stopped by SIGTERM"))
    if args.json:
        die_with_parent()
    removed = netns.cleanup_leftovers()
    if removed:
        say(f"removed what an earlier run left: {', '.join(removed)}")
    if args.cleanup:
        return
    for tool in (args.herd, args.loadgen):
        if not os.access(tool, os.X_OK):
            raise SystemExit(f"{tool} is missing: cargo build --release -p herd-cli -p herd-loadgen (bench/run does)")
    rate, inter_ms, drain = SETTINGS["quick" if args.quick else "full"]
    with netns.Network(3) as net:
        fleet = Fleet(net, args.herd, inter_ms, drain)
        results = scenarios(fleet, args.loadgen, rate, args.quick)
    if args.json:
        print(json.dumps(results))
        return
    print(table(results), step_table(results), verdicts(results), sep="\n\n")
    write_report(args.report, results, args, rate, inter_ms, drain)
    print(f"\nwrote {args.report}")


if __name__ == "__main__":
    main()
