"""The check's own negative tests: each mutation puts one mistake into a copy of deploy/ and
the check must reject it, with the expected words."""
import os
import shutil
import tempfile

K = "deploy/kubernetes/"
DEPLOYMENT, CONFIGMAP = K + "base/deployment.yaml", K + "base/configmap.yaml"
HPA, ADAPTER = K + "hpa/horizontalpodautoscaler.yaml", K + "hpa/prometheus-adapter.yaml"
KEDA = K + "keda/scaledobject.yaml"
DOCKERFILE, UNIT = "deploy/docker/Dockerfile", "deploy/systemd/herd.service"

# (what, file, text, replacement, words the error must contain)
MUTATIONS = [
    ("a misspelled Deployment field", DEPLOYMENT, "minReadySeconds:", "minReadySecond:",
     "Additional properties are not allowed"),
    ("a field of the wrong type", DEPLOYMENT, "replicas: 2", "replicas: two", "is not of type"),
    ("a retired API version", DEPLOYMENT, "apiVersion: apps/v1", "apiVersion: apps/v1beta1",
     "has no schema"),
    ("a grace period shorter than herd's stop", DEPLOYMENT,
     "terminationGracePeriodSeconds: 40", "terminationGracePeriodSeconds: 30",
     "must exceed drain-delay"),
    ("readiness on /healthz", DEPLOYMENT, "path: /readyz", "path: /healthz", "/readyz"),
    ("a probe on the wrong port", DEPLOYMENT, "path: /healthz\n              port: metrics",
     "path: /healthz\n              port: http", "but herd serves"),
    ("a preStop hook", DEPLOYMENT, "          readinessProbe:",
     "          lifecycle:\n            preStop:\n              exec:\n                command: "
     "[sleep, \"5\"]\n          readinessProbe:", "no preStop"),
    ("a Service selecting no pod", K + "base/service.yaml", "  selector:\n    app: herd-hello",
     "  selector:\n    app: herd", "does not match"),
    ("a Service on a port the pod does not open", K + "base/service.yaml",
     "targetPort: http", "targetPort: 8081", "no port of the container"),
    ("a herd config herd check refuses", CONFIGMAP, 'workers = "2..8"', 'workers = "8..2"',
     "herd check failed"),
    ("an HPA metric no adapter rule exposes", HPA, "name: herd_pool_saturation",
     "name: herd_pool_saturatio", "exposed by no Prometheus adapter rule"),
    ("an HPA target at the pool's maximum", HPA, "averageValue: 800m", "averageValue: 1",
     "near the pool's maximum"),
    ("a misspelled ScaledObject field", KEDA, "minReplicaCount:", "minReplicaCont:",
     "does not fit KEDA's schema"),
    ("a ScaledObject threshold that is not a string", KEDA, 'threshold: "0.8"',
     "threshold: 0.8", "is not of type 'string'"),
    ("a minimum of pods above the maximum", KEDA, "minReplicaCount: 2", "minReplicaCount: 30",
     "is above maxReplicaCount"),
    ("a queue trigger on a socket herd does not bind", KEDA, ',socket="http"}', ',socket="web"}',
     "must name a bound socket"),
    ("a COPY of a missing file", DOCKERFILE, "COPY examples/hello.py",
     "COPY examples/missing.py", "no such file in the build context"),
    ("a COPY that .dockerignore leaves out", ".dockerignore", "!examples/hello.py\n", "",
     ".dockerignore leaves it out"),
    ("a shell-form ENTRYPOINT", DOCKERFILE,
     'ENTRYPOINT ["/usr/local/bin/herd", "run", "--config", "/etc/herd/herd.toml"]',
     "ENTRYPOINT /usr/local/bin/herd run --config /etc/herd/herd.toml", "exec form"),
    ("a build stage missing a workspace member", DOCKERFILE,
     "COPY bench/loadgen bench/loadgen\n", "", "not a workspace that builds herd"),
    ("a HEALTHCHECK on another path", DOCKERFILE, "9100/healthz", "9100/health", "/healthz"),
    ("an image running as root", DOCKERFILE, "USER 10001:10001", "USER root", "root"),
    ("a build without --locked", DOCKERFILE, "cargo build --locked", "cargo build",
     "--locked --release"),
    ("an image stop longer than docker stop waits", "deploy/docker/herd.toml", 'grace = "5s"',
     'grace = "30s"', "docker stop"),
    ("a unit key systemd does not know", UNIT, "TimeoutStopSec=35", "TimeoutStopSecs=35",
     "Unknown key"),
    ("a TimeoutStopSec shorter than herd's stop", UNIT, "TimeoutStopSec=35",
     "TimeoutStopSec=20", "must exceed"),
    ("an fd store too small for herd.toml's sockets", UNIT, "FileDescriptorStoreMax=16\n", "",
     "FileDescriptorStoreMax= 0 is below"),
    ("a unit that kills the workers with herd", UNIT, "KillMode=mixed",
     "KillMode=control-group", "KillMode=mixed"),
]


def copy_of(root):
    """A temporary tree that is `root` with deploy/ and .dockerignore copied (the rest
    linked), so that a mutation touches only the copy."""
    tmp = tempfile.mkdtemp(prefix="check-deploy.")
    for entry in os.listdir(root):
        if entry in ("deploy", ".dockerignore", "target", ".git"):
            continue
        os.symlink(os.path.join(os.path.abspath(root), entry), os.path.join(tmp, entry))
    shutil.copytree(os.path.join(root, "deploy"), os.path.join(tmp, "deploy"))
    shutil.copy(os.path.join(root, ".dockerignore"), tmp)
    return tmp


def mutate(tmp, path, old, new):
    """Replaces `old` (which must be there) by `new` in `path` under `tmp`."""
    with open(os.path.join(tmp, path)) as f:
        text = f.read()
    if old not in text:
        raise SystemExit(f"check-deploy: self-test: {path} no longer contains {old!r}; "
                         "update scripts/deploycheck/selftest.py")
    with open(os.path.join(tmp, path), "w") as f:
        f.write(text.replace(old, new, 1))


def run(root, check_all):
    """Runs every mutation through `check_all(root) -> errors`; returns (passed, failed)."""
    passed = failed = 0
    for what, path, old, new, words in MUTATIONS:
        tmp = copy_of(root)
        try:
            mutate(tmp, path, old, new)
            errors = check_all(tmp)
        finally:
            shutil.rmtree(tmp)
        hit = [e for e in errors if words in e]
        if hit:
            passed += 1
            print(f"ok: rejects {what}: {hit[0]}")
        else:
            failed += 1
            print(f"FAILED: {what} was not rejected with {words!r}; errors: {errors}")
    return passed, failed
