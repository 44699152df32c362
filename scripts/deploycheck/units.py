"""deploy/systemd/, checked with `systemd-analyze verify` (any message about our units is an
error; ExecStart's herd is pointed at the herd built for the test) and against the herd
configs the units start: TimeoutStopSec= above drain-delay + grace, the socket's name."""
import glob
import os
import re
import shutil
import subprocess
import tempfile

import herdconf

INSTALLED_HERD = "/usr/local/bin/herd"
CONFIG_DIR = "/etc/herd/"


def systemd_version():
    """The version of the systemd that systemd-analyze belongs to, e.g. 252."""
    out = subprocess.run(["systemd-analyze", "--version"], capture_output=True, text=True)
    m = re.match(r"systemd (\d+)", out.stdout)
    return int(m.group(1)) if m else 0


def settings(text):
    """{key: [values]} of a unit file (continuations joined)."""
    found = {}
    for line in text.replace("\\\n", " ").splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def for_this_systemd(name, text, version, notes):
    """The unit as this systemd can verify it: Type=notify-reload needs systemd 253; older
    ones verify it as Type=notify without ReloadSignal=, and say so in `notes`."""
    if version >= 253 or "Type=notify-reload" not in text:
        return text
    notes.append(f"{name}: systemd {version} predates Type=notify-reload (253): verified as "
                 "Type=notify without ReloadSignal=; the rest of the unit as written")
    text = text.replace("Type=notify-reload", "Type=notify")
    return re.sub(r"(?m)^ReloadSignal=.*\n", "", text)


def verify(units, herd, notes):
    """Errors from `systemd-analyze verify` on the units ({name: text}), copied to a
    temporary directory with ExecStart's herd replaced by `herd`."""
    version = systemd_version()
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in units.items():
            text = for_this_systemd(name, text, version, notes)
            with open(os.path.join(tmp, name), "w") as f:
                f.write(text.replace(INSTALLED_HERD, os.path.abspath(herd)))
        paths = [os.path.join(tmp, n) for n in sorted(units)]
        run = subprocess.run(["systemd-analyze", "verify", "--man=no", "--generators=no",
                              *paths], capture_output=True, text=True)
        lines = (run.stdout + run.stderr).splitlines()
        ours = [line.replace(tmp + "/", "deploy/systemd/") for line in lines
                if tmp in line or line.split(":")[0] in units]
    if run.returncode != 0 and not ours:
        ours = [f"systemd-analyze verify failed: {' '.join(lines[-3:])}"]
    return ours


def check_service(root, name, unit, herd):
    """A herd service: Type=notify(-reload), KillMode=mixed, and a herd config that passes
    `herd check` and fits TimeoutStopSec= (and the socket unit's names)."""
    where, errors = f"deploy/systemd/{name}", []
    if unit.get("Type", [""])[-1] not in ("notify", "notify-reload"):
        errors.append(f"{where}: Type= must be notify or notify-reload (herd reports READY=1)")
    if unit.get("KillMode", [""])[-1] != "mixed":
        errors.append(f"{where}: KillMode=mixed: SIGTERM to herd alone, which stops its workers")
    m = re.search(r"--config\s+(\S+)", unit.get("ExecStart", [""])[-1])
    if not m or not m.group(1).startswith(CONFIG_DIR):
        return errors + [f"{where}: ExecStart= must be `herd run --config {CONFIG_DIR}FILE`"]
    source = os.path.join(root, "deploy/systemd", m.group(1)[len(CONFIG_DIR):])
    if not os.path.exists(source):
        return errors + [f"{where}: {m.group(1)} has no copy in deploy/systemd/"]
    with open(source) as f:
        text = f.read()
    config_where = os.path.relpath(source, root)
    try:
        config = herdconf.parse(text, config_where)
        drain, grace = herdconf.stop_seconds(config)
        stop = unit.get("TimeoutStopSec", ["90s"])[-1].replace(" ", "").replace("min", "m")
        stop = herdconf.seconds(stop.replace("sec", "s"), "TimeoutStopSec")
    except ValueError as e:
        return errors + [f"{where}: {e}"]
    errors += fdstore_errors(where, unit, config, config_where)
    if stop <= drain + grace:
        errors.append(f"{where}: TimeoutStopSec= {stop:g} s must exceed {config_where}'s "
                      f"drain-delay {drain:g} s + grace {grace:g} s = {drain + grace:g} s")
    return errors + herdconf.herd_check(herd, text, config_where)


def fdstore_errors(where, unit, config, config_where):
    """With `fdstore = true`, FileDescriptorStoreMax= must hold every socket and --shm area
    (systemd's default, 0, stores none, and herd then refuses to start)."""
    if config.get("fdstore") is not True:
        return []
    needed = len(config.get("bind", [])) + len(config.get("shm", []))
    try:
        limit = int(unit.get("FileDescriptorStoreMax", ["0"])[-1])
    except ValueError:
        return [f"{where}: FileDescriptorStoreMax= must be a number"]
    if limit >= needed:
        return []
    return [f"{where}: FileDescriptorStoreMax= {limit} is below {needed}, what {config_where} "
            "stores with fdstore = true (one per bind and shm): raise it"]


def check(root, herd, notes):
    """Errors in deploy/systemd/; `notes` gets what could not be verified as written."""
    units = {}
    for path in sorted(glob.glob(os.path.join(root, "deploy/systemd/*.s*"))):
        if path.endswith((".service", ".socket")):
            with open(path) as f:
                units[os.path.basename(path)] = f.read()
    if not units:
        return ["deploy/systemd/: no units found"]
    if not shutil.which("systemd-analyze"):
        return ["systemd-analyze is missing: run scripts/setup.sh"]
    errors = verify(units, herd, notes)
    for name, text in units.items():
        unit = settings(text)
        if name.endswith(".service") and INSTALLED_HERD in unit.get("ExecStart", [""])[-1]:
            errors += check_service(root, name, unit, herd)
        elif name.endswith(".socket"):
            names = unit.get("FileDescriptorName", [])
            if not names:
                errors.append(f"deploy/systemd/{name}: FileDescriptorName= names the socket "
                              "for herd and its workers")
    return errors
