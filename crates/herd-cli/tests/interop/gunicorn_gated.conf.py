"""A gunicorn config for tests/cli/interop_gunicorn.rs: examples/gunicorn_herd.conf.py when
GUNICORN_RECIPE is 1 (else gunicorn's defaults with `--preload`), and a gate: the worker, right
after its fork and before its own set-up, waits until a byte arrives on the FIFO named by
GUNICORN_GATE, so that a test sees what herd counts while the worker cannot accept yet."""
import os

if os.environ.get("GUNICORN_RECIPE") == "1":
    _recipe = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..",
                           "examples", "gunicorn_herd.conf.py")
    with open(_recipe) as _f:
        exec(compile(_f.read(), _recipe, "exec"))
else:
    preload_app = True
    workers = 1


def post_fork(server, worker):
    with open(os.environ["GUNICORN_GATE"], "rb") as gate:
        gate.read(1)
