"""The Kubernetes resources of deploy/kubernetes/ against each other and against the herd
config in their ConfigMap: probes on herd's /readyz and /healthz, ports, the stop timeouts,
the autoscalers' target and metric names."""
import os
import re

import yaml

import herdconf

CONFIG_DIR = "/etc/herd"  # where the image's entrypoint reads herd.toml (deploy/docker)


def quantity(value):
    """A Kubernetes quantity ("800m", "2", 0.5) as a float, or None."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(m?)", str(value))
    return float(m.group(1)) / (1000 if m.group(2) else 1) if m else None


def by_kind(found, kind):
    """[(file, resource)] of one kind."""
    return [(w, r) for w, r in found if r.get("kind") == kind]


def herd_config(found, deployment, herd):
    """(errors, config) of the herd.toml the Deployment mounts at /etc/herd."""
    where, spec = deployment[0], deployment[1]["spec"]["template"]["spec"]
    container = spec["containers"][0]
    mounts = {m["name"]: m for m in container.get("volumeMounts", [])
              if m.get("mountPath") == CONFIG_DIR}
    maps = {v["name"]: v["configMap"]["name"] for v in spec.get("volumes", [])
            if v.get("configMap") and v["name"] in mounts}
    text = None
    for w, cm in by_kind(found, "ConfigMap"):
        if cm["metadata"]["name"] in maps.values() and "herd.toml" in cm.get("data", {}):
            where, text = w, cm["data"]["herd.toml"]
    if text is None:
        return [f"{where}: no ConfigMap with herd.toml is mounted at {CONFIG_DIR}"], None
    try:
        config = herdconf.parse(text, where)
    except ValueError as e:
        return [str(e)], None
    return herdconf.herd_check(herd, text, f"{where} (herd.toml)"), config


def port_number(container, port):
    """A probe's or Service's port, by number or by the container port's name."""
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    return None


def check_probes(where, container, config):
    """Readiness on /readyz, liveness on /healthz, both on herd's metrics or health port."""
    errors, served = [], herdconf.probe_ports(config)
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = container.get(probe, {}).get("httpGet")
        if not get or get.get("path") != path:
            errors.append(f"{where}: {probe} must be an httpGet of {path}")
        elif port_number(container, get.get("port")) not in served:
            errors.append(f"{where}: {probe} asks port {get.get('port')}, but herd serves "
                          f"{path} on {sorted(served) or 'no port (set metrics or health)'}")
    return errors


def check_deployment(where, deployment, config):
    """The pod: no preStop, a grace period longer than herd's stop, probes, ports."""
    spec = deployment["spec"]["template"]["spec"]
    container = spec["containers"][0]
    errors = check_probes(where, container, config)
    if container.get("lifecycle", {}).get("preStop"):
        errors.append(f"{where}: no preStop hook: herd's drain-delay keeps serving after "
                      "SIGTERM")
    drain, grace = herdconf.stop_seconds(config)
    period = spec.get("terminationGracePeriodSeconds", 30)
    if period <= drain + grace:
        errors.append(f"{where}: terminationGracePeriodSeconds {period} must exceed "
                      f"drain-delay {drain:g} s + grace {grace:g} s = {drain + grace:g} s")
    ports = {p["containerPort"] for p in container.get("ports", [])}
    missing = set(herdconf.bind_ports(config).values()) - ports
    if missing:
        errors.append(f"{where}: containerPorts lack herd's bound port(s) {sorted(missing)}")
    return errors


def check_selectors(found, deployment):
    """Services and PodDisruptionBudgets select the Deployment's pods, on a bound port."""
    errors, labels = [], deployment[1]["spec"]["template"]["metadata"].get("labels", {})
    container = deployment[1]["spec"]["template"]["spec"]["containers"][0]
    for where, r in by_kind(found, "Service") + by_kind(found, "PodDisruptionBudget"):
        selector = r["spec"].get("selector", {})
        selector = selector.get("matchLabels", selector) if r["kind"] != "Service" else selector
        if not selector or any(labels.get(k) != v for k, v in selector.items()):
            errors.append(f"{where}: the {r['kind']}'s selector {selector} does not match the "
                          f"pods' labels {labels}")
        container_ports = {p["containerPort"] for p in container.get("ports", [])}
        for p in r["spec"].get("ports", []):
            target = p.get("targetPort", p.get("port"))
            if port_number(container, target) not in container_ports:
                errors.append(f"{where}: targetPort {target} is no port of the container")
    return errors


def adapter_metrics(found):
    """{metric name: file} that the Prometheus adapter's rules expose."""
    exposed = {}
    for where, cm in by_kind(found, "ConfigMap"):
        text = cm.get("data", {}).get("config.yaml")
        if text is None:
            continue
        for rule in (yaml.safe_load(text) or {}).get("rules", []):
            name = rule.get("name", {}).get("as")
            series = re.match(r"\s*([a-zA-Z_:][\w:]*)", rule.get("seriesQuery", ""))
            if name and series and series.group(1) == name:
                exposed[name] = where
    return exposed


def check_hpa(found, deployment):
    """The HPA scales the Deployment on herd_pool_saturation, exposed by the adapter, with a
    target below the pool's maximum."""
    errors, exposed = [], adapter_metrics(found)
    for where, hpa in by_kind(found, "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        if (ref.get("kind"), ref.get("name")) != ("Deployment", deployment[1]["metadata"]["name"]):
            errors.append(f"{where}: scaleTargetRef must name the Deployment")
        for metric in hpa["spec"].get("metrics", []):
            name = metric.get("pods", {}).get("metric", {}).get("name")
            if name not in exposed:
                errors.append(f"{where}: the metric {name} is exposed by no Prometheus adapter "
                              "rule in deploy/kubernetes/")
            target = quantity(metric.get("pods", {}).get("target", {}).get("averageValue"))
            if name == "herd_pool_saturation" and not (target and 0.5 <= target < 1):
                errors.append(f"{where}: the target of herd_pool_saturation must say \"near the "
                              "pool's maximum\": between 500m and 1 (exclusive)")
    return errors


def check_keda(found, deployment, config):
    """The ScaledObject scales the Deployment on herd's saturation and accept queue."""
    errors, sockets = [], herdconf.bind_ports(config)
    for where, so in by_kind(found, "ScaledObject"):
        if so["spec"]["scaleTargetRef"].get("name") != deployment[1]["metadata"]["name"]:
            errors.append(f"{where}: scaleTargetRef must name the Deployment")
        queries = {}
        for trigger in so["spec"].get("triggers", []):
            meta = trigger.get("metadata", {})
            metric = re.match(r"\w+\(\w+\((\w+)", meta.get("query", "").replace(" ", ""))
            queries[metric.group(1) if metric else meta.get("query")] = meta
        saturation = queries.get("herd_pool_saturation")
        if not saturation or not 0.5 <= float(saturation.get("threshold", 0)) < 1:
            errors.append(f"{where}: a prometheus trigger on herd_pool_saturation with a "
                          "threshold between 0.5 and 1 (exclusive) is needed")
        queue = queries.get("herd_listen_queue_length", {}).get("query", "")
        socket = re.search(r'socket="([^"]+)"', queue)
        if queue and (not socket or socket.group(1) not in sockets):
            errors.append(f"{where}: herd_listen_queue_length's socket= must name a bound "
                          f"socket: {sorted(sockets)}")
    return errors


def autoscaler_metrics(found):
    """The series the HPA and KEDA read, as herd exports them: `name` or
    `name{socket="NAME"}` (the other labels are Prometheus' own)."""
    wanted = set()
    for _, hpa in by_kind(found, "HorizontalPodAutoscaler"):
        for metric in hpa["spec"].get("metrics", []):
            name = metric.get("pods", {}).get("metric", {}).get("name")
            wanted |= {name} if name else set()
    for _, so in by_kind(found, "ScaledObject"):
        for trigger in so["spec"].get("triggers", []):
            query = trigger.get("metadata", {}).get("query", "")
            for name, labels in re.findall(r"(herd_\w+)(\{[^}]*\})?", query):
                socket = re.search(r'socket="[^"]+"', labels)
                wanted.add(name + ("{" + socket.group(0) + "}" if socket else ""))
    return wanted


def check_replica_bounds(found):
    """min <= max for the HPA and the ScaledObject: the API server's own rule, and the CEL rule
    of KEDA's CRD, which the schema check does not evaluate."""
    errors = []
    for kind, low, high, default in (("HorizontalPodAutoscaler", "minReplicas", "maxReplicas",
                                      None), ("ScaledObject", "minReplicaCount",
                                              "maxReplicaCount", 100)):
        for where, r in by_kind(found, kind):
            least, most = r["spec"].get(low, 1), r["spec"].get(high, default)
            if most is not None and least > most:
                errors.append(f"{where}: {low} {least} is above {high} {most}")
    return errors


def check_layout(found):
    """The HPA and the ScaledObject are never applied together (KEDA makes its own HPA)."""
    dirs = {os.path.dirname(w) for w, _ in by_kind(found, "HorizontalPodAutoscaler")}
    clash = dirs & {os.path.dirname(w) for w, _ in by_kind(found, "ScaledObject")}
    return [f"{d}: an HPA and a ScaledObject in one directory would both scale the Deployment"
            for d in sorted(clash)]


def check(found, herd):
    """Errors found by reading the resources together."""
    deployments = by_kind(found, "Deployment")
    if len(deployments) != 1:
        return [f"deploy/kubernetes/: expected one Deployment, found {len(deployments)}"]
    deployment = deployments[0]
    errors, config = herd_config(found, deployment, herd)
    if config is None:
        return errors
    try:
        errors += check_deployment(deployment[0], deployment[1], config)
    except ValueError as e:
        errors.append(str(e))
    errors += check_selectors(found, deployment)
    errors += check_hpa(found, deployment)
    errors += check_keda(found, deployment, config)
    return errors + check_replica_bounds(found) + check_layout(found)
