#!/usr/bin/python3
"""A test worker that takes its sockets with python-systemd (libsystemd's sd_listen_fds), the
strictest reader of LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES, and answers with what it got."""

import json
import os
import socket
import sys

from systemd import daemon

seen = {k: os.environ.get(k) for k in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")}
fds = daemon.listen_fds_with_names()  # {fd: name}; empty if LISTEN_PID is not ours
if not fds:
    sys.exit(f"systemd_worker: libsystemd found no sockets in {seen}")
by_name = {name: fd for fd, name in fds.items()}
listener = socket.socket(fileno=by_name["web"])
unix = socket.socket(fileno=by_name["local"])
while True:
    conn, _ = listener.accept()
    conn.recv(65536)
    body = json.dumps({
        "pid": os.getpid(),
        "fds": {str(fd): name for fd, name in fds.items()},
        "seen": seen,
        "unix_family": unix.family == socket.AF_UNIX,
    }).encode()
    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    conn.close()
