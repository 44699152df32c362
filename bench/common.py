"""What the benchmark scripts share: paths, a herd process, the load generator, a bar chart."""
import json
import os
import platform
import shutil
import socket
import subprocess
import tempfile
import time

from herdctl import status

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def target_directory():
    """Where cargo builds this workspace: `target/` unless CARGO_TARGET_DIR or a cargo config's
    `build.target-dir` moves it (as `cargo metadata` says), so that the benchmarks run the
    binaries `cargo build --release` just built, not an older copy left in `target/`."""
    try:
        out = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
        return json.loads(out.stdout)["target_directory"]
    except (OSError, ValueError, KeyError, subprocess.SubprocessError):
        return os.path.join(ROOT, "target")


TARGET = target_directory()
RELEASE = os.path.join(TARGET, "release")
HERD = os.path.join(RELEASE, "herd")
LOADGEN = os.path.join(RELEASE, "herd-loadgen")
WORKER = os.path.join(RELEASE, "herd-bench-worker")
HELLO = os.path.join(ROOT, "examples", "hello.py")


def report(name):
    """Where a scenario writes its report: `$HERD_BENCH_REPORTS/NAME.md` (default
    `target/bench/`); `bench/run` splices the reports into docs/benchmarks.md."""
    directory = os.environ.get("HERD_BENCH_REPORTS", os.path.join(ROOT, "target", "bench"))
    os.makedirs(directory, exist_ok=True)
    return os.path.join(directory, f"{name}.md")


def figure(name):
    """Where a scenario writes its SVG chart: docs/NAME.svg, next to docs/benchmarks.md."""
    return os.path.join(ROOT, "docs", f"{name}.svg")


def machine():
    """`Linux 6.1.0, 2 cores; date 2026-11-21`."""
    return f"Linux {platform.release()}, {os.cpu_count()} cores; date {time.strftime('%Y-%m-%d')}"


def need_build():
    for tool in (HERD, LOADGEN, WORKER):
        if not os.access(tool, os.X_OK):
            raise SystemExit("build first: cargo build --release -p herd-cli -p herd-loadgen "
                             "(bench/run does)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, check, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.02)
    raise SystemExit(f"timed out waiting for {what}")


class Herd:
    """`herd run` of `command` on `bind`, with its own control socket."""

    def __init__(self, command, workers, bind="127.0.0.1:0", extra=(), control=None, takeover=False):
        self.control = control or os.path.join(tempfile.mkdtemp(), "c.sock")
        args = [HERD, "--log-level", "warn", "--control", self.control, "run", "-w", str(workers),
                "--ready", "notify", *extra]
        if takeover:
            args += ["--takeover", self.control]
        args += ["-b", f"http={bind}", "--", *command]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        self.workers = workers

    def ready(self):
        def check():
            s = status(self.control)
            return s["pid"] == self.proc.pid and s["ready"] == self.workers == s["running"]
        wait_until(f"{self.workers} ready workers", check)
        return self

    def address(self):
        return status(self.control)["sockets"][0]["address"]

    def ctl(self, *args):
        out = subprocess.run([HERD, "--control", self.control, *args], capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"herd {' '.join(args)} failed: {out.stderr.strip()}")

    def scale(self, n):
        self.ctl("scale", str(n))
        self.workers = n
        self.ready()

    def stop(self):
        self.ctl("stop")
        self.proc.wait(timeout=60)

    def __enter__(self):
        return self.ready()

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.stop()


def pinned(cpu, args):
    """`args` run on one CPU (`taskset`), where the machine has more than one."""
    if (os.cpu_count() or 1) > 1 and shutil.which("taskset"):
        return ["taskset", "-c", str(cpu), *args]
    return list(args)


def loadgen(address, *args, cpu=None):
    """Runs herd-loadgen against `address` (on CPU `cpu`, if given) and returns its JSON result."""
    command = [LOADGEN, address, *map(str, args)]
    if cpu is not None:
        command = pinned(cpu, command)
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def bars(groups, unit, width=640):
    """A horizontal bar chart as SVG: `groups` is [(label, [(series, value), ...]), ...]."""
    colors = ["#3b6ea5", "#d9822b", "#5a9e4b", "#8e6bb8"]
    series = []
    for _, values in groups:
        for name, _ in values:
            if name not in series:
                series.append(name)
    top = max((v for _, values in groups for _, v in values), default=1) or 1
    bar, gap, left, right = 14, 10, 150, 90
    height = 30 + sum(len(values) * bar + gap for _, values in groups)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="11">']
    y = 20
    for label, values in groups:
        out.append(f'<text x="4" y="{y + bar * len(values) / 2 + 4:.0f}">{label}</text>')
        for name, v in values:
            w = (width - left - right) * v / top
            color = colors[series.index(name) % len(colors)]
            out.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar - 2}" fill="{color}"/>')
            out.append(f'<text x="{left + w + 4:.1f}" y="{y + bar - 4}">{name}: {v:g} {unit}</text>')
            y += bar
        y += gap
    out.append("</svg>")
    return "\n".join(out)


NGINX_CONF = """daemon off;
worker_processes {workers};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  server {{ listen 127.0.0.1:{port}{reuseport}; location / {{ return 200 "nginx\\n"; }} }}
}}
"""


def start_nginx(reuseport=False, workers=2):
    """nginx with `workers` workers (2 unless told) answering `return 200` on a free loopback port, as
    (process, port); None when nginx is not installed."""
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if binary is None:
        return None
    d, port = tempfile.mkdtemp(), free_port()
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(d=d, port=port, workers=workers, reuseport=" reuseport" if reuseport else ""))
    proc = subprocess.Popen([binary, "-p", d, "-c", conf], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, port
