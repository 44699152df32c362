"""waitress under herd: `serve(sockets=...)` with the socket at fd 3 (LISTEN_FDS).

waitress handles no signal itself: SIGTERM would end it in the middle of a request. Here
SIGTERM stops accepting and the process exits once the requests it holds are answered, so
a `herd upgrade` loses no connection.
"""
import os
import signal
import socket

from waitress.channel import HTTPChannel
from waitress.server import create_server

from pid_app import wsgi


def main():
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        raise SystemExit("waitress_app.py: no socket for this process")
    server = create_server(wsgi, sockets=[socket.socket(fileno=3)])
    stopping = []

    def stop(signum, frame):
        server.accepting = False
        stopping.append(signum)

    signal.signal(signal.SIGTERM, stop)
    busy = lambda: any(isinstance(c, HTTPChannel) for c in server._map.values())
    while not stopping or busy():
        server.asyncore.loop(timeout=0.1, map=server._map, count=1)
    server.task_dispatcher.shutdown(cancel_pending=False)


main()
