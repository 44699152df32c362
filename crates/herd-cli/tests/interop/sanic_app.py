"""Sanic under herd: the socket at fd 3 (LISTEN_FDS), in Sanic's single-process mode.

SANIC_MULTI_PROCESS=1 runs Sanic's default multi-process mode instead, whose main process
shuts the socket down when it stops (see docs/interop.md).
"""
import os
import socket
import sys

from sanic import Sanic
from sanic.response import text

app = Sanic("herd")


@app.get("/")
async def index(request):
    return text(f"sanic pid {os.getpid()}\n")


@app.after_server_start
def say_serving(*_):
    """For the tests: in multi-process mode, the process that serves is not herd's worker."""
    print(f"sanic_app.py: pid {os.getpid()} serving", file=sys.stderr, flush=True)


if __name__ == "__main__":
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        raise SystemExit("sanic_app.py: no socket for this process")
    single = os.environ.get("SANIC_MULTI_PROCESS") != "1"
    app.run(sock=socket.socket(fileno=3), single_process=single, access_log=False)
