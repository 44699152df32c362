"""The herd configs deploy/ ships, run for real on loopback: each one's workers (the example
worker, from examples/) become ready, /readyz and /healthz answer 200 and the shared port
serves, and the pods' /metrics exports the series the HPA and KEDA read; on SIGTERM /readyz
turns to 503 `draining` while the port still serves; a second SIGTERM ends the drain, and herd
exits 0. Addresses become 127.0.0.1:0 (herd's log says which ports it got), the control socket
a temporary one, the fd store off (there is no systemd), and a drain-delay one long enough to
look at on a busy machine (the timeouts themselves are checked against each other elsewhere);
everything else is as shipped."""
import json
import os
import queue
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

import herdconf
import kube
import kubefit

TIMEOUT = 60  # seconds for any one step; the example worker is ready in about 2 s


def shipped_configs(root):
    """[(where, text)] of the herd configs that deploy/ starts herd with (the socket-activated
    one needs systemd's socket, and is left to `herd check`)."""
    configs = []
    for where in ("deploy/docker/herd.toml", "deploy/systemd/herd.toml"):
        with open(os.path.join(root, where)) as f:
            configs.append((where, f.read()))
    for where, resource in kube.resources(root):
        if resource.get("kind") == "ConfigMap" and "herd.toml" in resource.get("data", {}):
            configs.append((f"{where} (herd.toml)", resource["data"]["herd.toml"]))
    return configs


def on_loopback(config, root, tmp):
    """The config as TOML text, on 127.0.0.1:0, with the example worker from examples/."""
    hello = os.path.abspath(os.path.join(root, "examples/hello.py"))
    config = dict(config)
    config["command"] = [hello if a.endswith("/hello.py") else a for a in config["command"]]
    config["bind"] = [loopback(b) for b in config.get("bind", [])]
    for key in ("metrics", "health"):
        if key in config:
            config[key] = "127.0.0.1:0"
    config["control"] = os.path.join(tmp, "control.sock")
    config.pop("fdstore", None)  # systemd's store: not here (tests/cli/fdstore.rs plays it)
    if herdconf.stop_seconds(config)[0] > 0:
        config["drain-delay"] = f"{TIMEOUT}s"  # long enough to see; a second SIGTERM ends it
    return "".join(f"{key} = {json.dumps(value)}\n" for key, value in config.items())


def loopback(spec):
    """A --bind spec with its address made 127.0.0.1:0, name and options kept."""
    head, _, options = spec.partition(",")
    name, equals, address = head.rpartition("=")
    address = "127.0.0.1:0" if herdconf.port(address or head) is not None else head
    return (name + equals if equals else "") + address + ("," + options if options else "")


def get(url):
    """(status, body) of a GET, or (None, why) when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode(errors="replace").strip()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace").strip()
    except OSError as e:
        return None, str(e)


class Herd:
    """herd running one config, its log events read as they come."""

    def __init__(self, herd, path):
        self.process = subprocess.Popen([herd, "--log-format", "json", "run", "--config", path],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        text=True)
        self.events, self.seen = queue.Queue(), []
        threading.Thread(target=self.read, daemon=True).start()

    def read(self):
        for line in self.process.stderr:
            try:
                self.events.put(json.loads(line))
            except json.JSONDecodeError:
                self.events.put({"event": "text", "message": line.strip()})
        self.events.put({"event": "eof"})

    def wait_for(self, name, count=1):
        """The `count`-th event `name`; an AssertionError with what was seen at the deadline."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            matching = [e for e in self.seen if e.get("event") == name]
            if len(matching) >= count:
                return matching[count - 1]
            if self.seen and self.seen[-1].get("event") == "eof":
                break
            try:
                self.seen.append(self.events.get(timeout=max(deadline - time.monotonic(), 0)))
            except queue.Empty:
                break
        messages = [e.get("message") for e in self.seen[-5:]]
        raise AssertionError(f"herd never logged {name}; its last lines: {messages}")

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def until(predicate, what):
    """Asks `predicate()` (a (done, last answer) pair) again until done, for at most TIMEOUT
    seconds: the probes answer from what herd's loop last published, a moment after its log."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        done, answer = predicate()
        if done:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still {answer} after {TIMEOUT} s")
        time.sleep(0.05)


def exercise(h, config, wanted):
    """The scenario on a started herd, whose /metrics (if any) must export the series in
    `wanted`; what it saw, in a few words."""
    probes = "health_ready" if "health" in config else "metrics_ready"
    base = "http://" + h.wait_for(probes)["address"]
    port = "http://" + h.wait_for("listening")["address"] + "/"
    h.wait_for("worker_ready", max(config.get("ready-min", 1), 1))
    until(lambda: ((a := get(base + "/readyz"))[0] == 200, a), "/readyz once workers are ready")
    if wanted:
        scrape = get("http://" + h.wait_for("metrics_ready")["address"] + "/metrics")
        missing = sorted(w for w in wanted if w not in scrape[1])
        if scrape[0] != 200 or missing:
            raise AssertionError(f"/metrics lacks what the autoscalers read: {missing}")
    health = get(base + "/healthz")
    served = get(port)
    if health != (200, "ok") or served[0] != 200 or not served[1].startswith("hello from"):
        raise AssertionError(f"/healthz answered {health}, the shared port {served}")
    h.process.send_signal(signal.SIGTERM)
    if herdconf.stop_seconds(config)[0] > 0:
        h.wait_for("draining")
        until(lambda: ((a := get(base + "/readyz"))[0] == 503 and "draining" in a[1], a),
              "/readyz while draining")
        served = get(port)
        if served[0] != 200:
            raise AssertionError(f"while draining, the shared port answered {served}")
        h.process.send_signal(signal.SIGTERM)  # a second stop request ends the drain
    code = h.process.wait(timeout=herdconf.stop_seconds(config)[1] + TIMEOUT)
    if code != 0:
        raise AssertionError(f"herd exited {code} after SIGTERM")
    exported = f", /metrics has {', '.join(sorted(wanted))}" if wanted else ""
    return (f"ready, /healthz ok, serves{exported}, drains (/readyz 503 draining, still "
            "serving), exits 0")


def check(root, herd):
    """(errors, oks) of running every shipped config."""
    errors, oks = [], []
    wanted = kubefit.autoscaler_metrics(kube.resources(root))
    for where, text in shipped_configs(root):
        try:
            config = herdconf.parse(text, where)
        except ValueError as e:
            errors.append(str(e))
            continue
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "herd.toml")
            with open(path, "w") as f:
                f.write(on_loopback(config, root, tmp))
            h = Herd(herd, path)
            try:
                reads = wanted if where.startswith("deploy/kubernetes/") else set()
                oks.append(f"{where} runs on loopback: {exercise(h, config, reads)}")
            except (AssertionError, subprocess.TimeoutExpired) as e:
                errors.append(f"{where} on loopback: {e}")
            finally:
                h.stop()
    return errors, oks
