"""herd's config files as deploy/ uses them: read with tomllib, checked with `herd check`."""
import os
import re
import subprocess
import tempfile
import tomllib

UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def seconds(value, what):
    """A herd duration ("10s", "1m30s", "500ms", or a number of seconds) in seconds."""
    if isinstance(value, (int, float)) or re.fullmatch(r"\d+", str(value)):
        return float(value)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", str(value))
    if not parts or "".join(n + u for n, u in parts) != str(value):
        raise ValueError(f"{what}: {value!r} is not a duration such as 10s or 1m30s")
    return sum(float(n) * UNITS[u] for n, u in parts)


def parse(text, where):
    """The config's keys, or a ValueError naming `where`."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{where}: not TOML: {e}") from None


def stop_seconds(config):
    """How long herd may take to stop: drain-delay + grace (herd's defaults: 0 and 30 s)."""
    drain = seconds(config.get("drain-delay", 0), "drain-delay")
    grace = seconds(config.get("grace", "30s"), "grace")
    return drain, grace


def port(address):
    """The port of a --bind, --metrics or --health address (":9100", "0.0.0.0:8080,nodelay")."""
    m = re.search(r":(\d+)(?:,|$)", address.split("=", 1)[-1])
    return int(m.group(1)) if m else None


def bind_ports(config):
    """{socket name: port} for the TCP sockets the config binds."""
    ports = {}
    for spec in config.get("bind", []):
        name, _, address = spec.rpartition("=") if "=" in spec.split(",")[0] else ("", "", spec)
        address = address.split(",")[0]
        if address.startswith(("unix:", "udp://", "fd:", "systemd")) or port(address) is None:
            continue
        ports[name or f"tcp-{port(address)}"] = port(address)
    return ports


def probe_ports(config):
    """The ports serving /healthz and /readyz: --metrics and --health."""
    return {port(config[k]) for k in ("metrics", "health") if k in config}


def herd_check(herd, text, where):
    """Errors from `herd check --config` on `text` (the file's contents), as one string each."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, os.path.basename(where))
        with open(path, "w") as f:
            f.write(text)
        run = subprocess.run([herd, "--log-level", "error", "check", "--config", path],
                             capture_output=True, text=True)
    if run.returncode == 0:
        return []
    why = (run.stderr.strip() or run.stdout.strip()).replace(path, where)
    return [f"{where}: herd check failed: {why}"]
