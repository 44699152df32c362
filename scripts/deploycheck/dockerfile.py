"""deploy/docker/Dockerfile, checked without Docker: its instructions are parsed, every COPY
source must exist in the build context and not be excluded by .dockerignore, the image's herd
config passes `herd check`, and the HEALTHCHECK, EXPOSE, USER, STOPSIGNAL and ENTRYPOINT fit
it."""
import json
import os
import re
import shlex
import subprocess
import tempfile

import herdconf

DOCKER_STOP_SECONDS = 10  # `docker stop`'s default wait before SIGKILL


def instructions(text):
    """[(line number, INSTRUCTION, arguments)], with continuations joined and comments
    dropped."""
    out, pending, start = [], "", 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = (pending + stripped).strip()
        pending = ""
        word, _, rest = whole.partition(" ")
        out.append((start, word.upper(), rest.strip()))
    return out


def stages(parsed):
    """The build stages: [{"name", "from", "lines": [(n, INSTRUCTION, args)]}]."""
    result = []
    for n, word, args in parsed:
        if word == "FROM":
            m = re.match(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?$", args, re.IGNORECASE)
            result.append({"from": m.group(1), "name": m.group(2), "lines": [], "line": n})
        elif result:
            result[-1]["lines"].append((n, word, args))
    return result


def split_flags(args):
    """(["--from=build", ...], [words]) of a COPY-like instruction, exec form or not."""
    words = shlex.split(args)
    flags = [w for w in words if w.startswith("--")]
    rest = [w for w in words if not w.startswith("--")]
    if rest and rest[0].startswith("["):
        rest = json.loads(" ".join(rest))
    return flags, rest


def ignore_patterns(context):
    """.dockerignore's patterns as [(negated, regex)], in order."""
    path = os.path.join(context, ".dockerignore")
    if not os.path.exists(path):
        return []
    patterns = []
    for line in open(path):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        glob = line.lstrip("!").strip("/")
        regex = re.escape(glob).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        patterns.append((negated, re.compile(regex + "$")))
    return patterns


def ignored(path, patterns):
    """Whether .dockerignore keeps `path` (relative to the context) out of the build: the last
    pattern matching it or one of its parent directories decides."""
    parts = path.strip("/").split("/")
    verdict = False
    for negated, regex in patterns:
        if any(regex.match("/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            verdict = not negated
    return verdict


def check_copies(stage_list, context, where):
    """Every COPY from the context names a file that exists and that .dockerignore keeps."""
    errors, copied = [], {}
    patterns = ignore_patterns(context)
    for stage in stage_list:
        for n, word, args in stage["lines"]:
            if word not in ("COPY", "ADD"):
                continue
            flags, words = split_flags(args)
            *sources, dest = words
            for source in sources:
                copied[dest] = None if any(f.startswith("--from") for f in flags) else source
                if any(f.startswith("--from") for f in flags):
                    continue
                if not os.path.exists(os.path.join(context, source)):
                    errors.append(f"{where}:{n}: COPY {source}: no such file in the build context")
                elif ignored(source, patterns):
                    errors.append(f"{where}:{n}: COPY {source}: .dockerignore leaves it out")
    return errors, copied


def last(lines, word):
    """The last (line, args) of instruction `word` in a stage, or (None, None)."""
    found = [(n, a) for n, w, a in lines if w == word]
    return found[-1] if found else (None, None)


def check_build_stage(stage_list, where):
    """At least two stages, the first building herd with `cargo build --locked --release`."""
    if len(stage_list) < 2:
        return [f"{where}: expected a build stage and a runtime stage, found {len(stage_list)}"]
    runs = " ".join(a for _, w, a in stage_list[0]["lines"] if w == "RUN")
    if not re.search(r"cargo build\b[^&;]*--locked", runs) or "--release" not in runs:
        return [f"{where}: the build stage must run `cargo build --locked --release`"]
    return []


def build_context(stage, context, tmp):
    """Lays out in `tmp` what the stage's COPY instructions put under its WORKDIR, as links."""
    _, workdir = last(stage["lines"], "WORKDIR")
    workdir = (workdir or "/").rstrip("/") + "/"
    for _, word, args in stage["lines"]:
        flags, words = split_flags(args) if word == "COPY" else ([], [])
        if not words or any(f.startswith("--from") for f in flags):
            continue
        *sources, dest = words
        dest = dest[len(workdir):] if dest.startswith(workdir) else dest.lstrip("./")
        for source in sources:
            origin = os.path.join(context, source)
            into = dest or "."
            if len(sources) > 1 or words[-1].endswith("/") or into == ".":
                into = os.path.join(into, os.path.basename(source.rstrip("/")))
            target = os.path.join(tmp, into)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if os.path.exists(origin) and not os.path.lexists(target):
                os.symlink(os.path.abspath(origin), target)


def check_workspace(stage, context, where):
    """The build stage's sources form a workspace whose Cargo.lock holds herd's dependencies:
    `cargo tree --locked --offline` on what its COPY instructions lay out."""
    with tempfile.TemporaryDirectory() as tmp:
        build_context(stage, context, tmp)
        run = subprocess.run(["cargo", "tree", "--locked", "--offline", "-p", "herd-cli",
                              "-e", "normal", "--target", "x86_64-unknown-linux-gnu"],
                             cwd=tmp, capture_output=True, text=True)
    if run.returncode == 0:
        return []
    why = " ".join(run.stderr.replace(tmp + "/", "").split())
    return [f"{where}: the build stage's COPY sources are not a workspace that builds herd "
            f"with --locked: {why}"]


def check_entrypoint(final, copied, where):
    """(errors, config path in the image): ENTRYPOINT must be the exec form of `herd run
    --config FILE`, with herd and FILE copied into the image."""
    n, args = last(final["lines"], "ENTRYPOINT")
    if args is None:
        return [f"{where}: the runtime stage has no ENTRYPOINT"], None
    try:
        argv = json.loads(args)
    except json.JSONDecodeError:
        argv = None
    if not isinstance(argv, list) or not argv:
        return [f"{where}:{n}: ENTRYPOINT must be the exec form ([\"herd\", ...]) so that herd "
                "is PID 1 and gets SIGTERM"], None
    errors = []
    if os.path.basename(argv[0]) != "herd" or argv[0] not in copied:
        errors.append(f"{where}:{n}: ENTRYPOINT must start with the herd the image copies in")
    if argv[1:2] != ["run"] or "--config" not in argv:
        errors.append(f"{where}:{n}: ENTRYPOINT must be `herd run --config FILE`")
        return errors, None
    config = argv[argv.index("--config") + 1] if argv.index("--config") + 1 < len(argv) else ""
    if copied.get(config) is None:
        errors.append(f"{where}:{n}: the config {config!r} is not copied from the build context")
        return errors, None
    return errors, copied[config]


def check_runtime(final, config, copied, where):
    """USER, STOPSIGNAL, HEALTHCHECK, EXPOSE and the stop timeouts against the config."""
    errors = []
    _, user = last(final["lines"], "USER")
    if user is None or user.split(":")[0] in ("root", "0"):
        errors.append(f"{where}: the runtime stage must run as a user other than root (USER)")
    n, signal = last(final["lines"], "STOPSIGNAL")
    if signal not in ("SIGTERM", "TERM", "15"):
        errors.append(f"{where}: STOPSIGNAL must be SIGTERM, herd's graceful stop (got {signal})")
    n, health = last(final["lines"], "HEALTHCHECK")
    probes = herdconf.probe_ports(config)
    m = re.search(r"https?://[^/:]+:(\d+)(/[^'\"\s]*)", health or "")
    if not m or m.group(2) != "/healthz":
        errors.append(f"{where}: the HEALTHCHECK must ask http://127.0.0.1:PORT/healthz")
    elif int(m.group(1)) not in probes:
        errors.append(f"{where}:{n}: the HEALTHCHECK asks port {m.group(1)}, but herd serves "
                      f"/healthz on {sorted(probes) or 'no port (set metrics or health)'}")
    exposed = {int(p.split("/")[0]) for _, w, a in final["lines"] if w == "EXPOSE"
               for p in a.split()}
    wanted = set(herdconf.bind_ports(config).values()) | probes
    if wanted - exposed:
        errors.append(f"{where}: EXPOSE lacks port(s) {sorted(wanted - exposed)} of the config")
    for arg in config.get("command", []):
        if arg.startswith("/") and not arg.startswith(("/usr/", "/bin/")) and arg not in copied:
            errors.append(f"{where}: the worker's {arg} is not copied into the image")
    drain, grace = herdconf.stop_seconds(config)
    if drain + grace >= DOCKER_STOP_SECONDS:
        errors.append(f"{where}: drain-delay {drain:g} s + grace {grace:g} s must stay under "
                      f"`docker stop`'s {DOCKER_STOP_SECONDS} s")
    return errors


def check(context, herd):
    """Errors in deploy/docker/Dockerfile, with `context` the repository (the build context)."""
    where = "deploy/docker/Dockerfile"
    with open(os.path.join(context, where)) as f:
        stage_list = stages(instructions(f.read()))
    errors = check_build_stage(stage_list, where)
    if not stage_list:
        return errors
    copy_errors, copied = check_copies(stage_list, context, where)
    errors += copy_errors
    if not errors:
        errors += check_workspace(stage_list[0], context, where)
    final = stage_list[-1]
    entry_errors, config_source = check_entrypoint(final, copied, where)
    errors += entry_errors
    if config_source is None or not os.path.exists(os.path.join(context, config_source)):
        return errors
    with open(os.path.join(context, config_source)) as f:
        text = f.read()
    try:
        config = herdconf.parse(text, config_source)
        errors += herdconf.herd_check(herd, text, config_source)
        errors += check_runtime(final, config, copied, where)
    except ValueError as e:
        errors.append(str(e))
    return errors
