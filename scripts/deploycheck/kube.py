"""deploy/kubernetes/, checked offline: every resource against the Kubernetes API's schemas
(kubernetes-validate, strict: unknown fields are errors), the KEDA ScaledObject against KEDA's
CRD schema vendored in deploy/schemas/, and the resources against each other and against the
herd config they carry (probes, ports, timeouts, metric names)."""
import copy
import glob
import os

import jsonschema
import yaml
from kubernetes_validate import utils as k8s

import herdconf
import kubefit

# The Kubernetes versions the manifests are checked against: the oldest and the newest they
# are meant for.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
KEDA_CRD = "deploy/schemas/keda.sh_scaledobjects.yaml"


def resources(root):
    """[(file, resource)] for every YAML document under deploy/kubernetes/."""
    out = []
    pattern = os.path.join(root, "deploy/kubernetes/**/*.yaml")
    for path in sorted(glob.glob(pattern, recursive=True)):
        where = os.path.relpath(path, root)
        with open(path) as f:
            try:
                docs = [d for d in yaml.safe_load_all(f) if d]
            except yaml.YAMLError as e:
                raise ValueError(f"{where}: not YAML: {e}") from None
        out += [(where, d) for d in docs]
    return out


def strict(schema):
    """`schema` with additionalProperties: false on every object that lists its properties,
    as the API server's strict field validation rejects unknown fields."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def keda_schema(root, version):
    """The openAPIV3Schema of KEDA's ScaledObject CRD for `version` (e.g. v1alpha1)."""
    with open(os.path.join(root, KEDA_CRD)) as f:
        crd = yaml.safe_load(f)
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            return strict(v["schema"]["openAPIV3Schema"])
    return None


def validate_keda(root, where, resource):
    """Errors of a keda.sh resource against the vendored CRD."""
    group, _, version = resource.get("apiVersion", "").partition("/")
    schema = keda_schema(root, version) if group == "keda.sh" else None
    if schema is None or resource.get("kind") != "ScaledObject":
        return [f"{where}: {resource.get('apiVersion')} {resource.get('kind')}: no schema "
                f"for it in {KEDA_CRD}"]
    errors = []
    for e in jsonschema.Draft7Validator(schema).iter_errors(resource):
        path = ".".join(str(p) for p in e.absolute_path) or "(top)"
        errors.append(f"{where}: ScaledObject does not fit KEDA's schema at {path}: {e.message}")
    return errors


def validate_kubernetes(where, resource):
    """Errors of a built-in resource against the Kubernetes schemas, strictly."""
    errors = []
    for version in KUBERNETES_VERSIONS:
        try:
            k8s.validate(resource, version, strict=True)
        except k8s.ValidationError as e:
            path = ".".join(str(p) for p in e.path) or "(top)"
            errors.append(f"{where}: {resource.get('kind')} does not validate against "
                          f"Kubernetes {e.version} at {path}: {e.message}")
        except (k8s.SchemaNotFoundError, k8s.InvalidSchemaError,
                k8s.VersionNotSupportedError) as e:
            errors.append(f"{where}: Kubernetes {version} has no schema for it: {e.message}")
    return errors


def check(root, herd):
    """Errors in deploy/kubernetes/."""
    try:
        found = resources(root)
    except ValueError as e:
        return [str(e)]
    if not found:
        return ["deploy/kubernetes/: no manifests found"]
    errors = []
    for where, resource in found:
        if not isinstance(resource, dict) or "kind" not in resource:
            errors.append(f"{where}: a document without a kind")
        elif resource.get("apiVersion", "").startswith("keda.sh/"):
            errors += validate_keda(root, where, resource)
        else:
            errors += validate_kubernetes(where, resource)
    if errors:
        return errors
    return kubefit.check(found, herd)
