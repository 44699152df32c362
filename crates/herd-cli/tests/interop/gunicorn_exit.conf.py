"""A gunicorn config for tests/cli/interop_gunicorn.rs: examples/gunicorn_herd.conf.py, and
marks in the file named by GUNICORN_MARKS, a line per process: `atexit PID` from an `atexit`
function, `teardown PID` from an object the interpreter's teardown destroys. With
GUNICORN_BOOT_ERROR=1 the worker fails as it boots (gunicorn's arbiter then halts with 3)."""
import atexit
import os
import sys
import types

_recipe = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..",
                       "examples", "gunicorn_herd.conf.py")
with open(_recipe) as _f:
    exec(compile(_f.read(), _recipe, "exec"))


def _mark(what):
    with open(os.environ["GUNICORN_MARKS"], "a") as f:
        f.write(f"{what} {os.getpid()}\n")


atexit.register(_mark, "atexit")


class _Teardown:
    def __del__(self):
        _mark("teardown")


_module = types.ModuleType("_herd_teardown_marker")
_module.marker = _Teardown()
sys.modules[_module.__name__] = _module
del _module

if os.environ.get("GUNICORN_BOOT_ERROR") == "1":
    def post_worker_init(worker):
        raise RuntimeError("the worker fails as it boots")
