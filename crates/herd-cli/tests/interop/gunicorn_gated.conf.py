"""A gunicorn config for tests/cli/interop_gunicorn.rs: examples/gunicorn_herd.conf.py when
GUNICORN_RECIPE is 1 (else gunicorn's defaults with `--preload`), and a gate: the worker, right
after its fork and before its own set-up, waits until a byte arrives on the FIFO named by
GUNICORN_GATE, so that a test sees what herd counts while the worker cannot accept yet. Before
it waits, the worker says `STATUS=at the gate` to herd: a datagram queued behind anything the
arbiter said before the fork, so once herd shows that status it has read those too."""
import os
import socket

if os.environ.get("GUNICORN_RECIPE") == "1":
    _recipe = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..",
                           "examples", "gunicorn_herd.conf.py")
    with open(_recipe) as _f:
        exec(compile(_f.read(), _recipe, "exec"))
else:
    preload_app = True
    workers = 1


def _say(message):
    address = globals().get("_notify_socket") or os.environ.get("NOTIFY_SOCKET")
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(address)
        s.sendall(message)


def post_fork(server, worker):
    _say(b"STATUS=at the gate")
    with open(os.environ["GUNICORN_GATE"], "rb") as gate:
        gate.read(1)
