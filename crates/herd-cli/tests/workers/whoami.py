#!/usr/bin/env python3
"""A test worker that answers with who and where it runs: uid, gid, groups, working directory,
umask, open-file limit, a few environment variables, and whether it may bind a privileged
port itself. Reports READY=1."""

import json
import os
import resource
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "examples"))
from hello import listen_sockets, serve  # noqa: E402


def can_bind_privileged():
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 1023))
        return True
    except PermissionError:
        return False
    except OSError:
        return True  # in use, but permitted


def main():
    listener = next(iter(listen_sockets().values()))
    mask = os.umask(0)
    os.umask(mask)
    facts = {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "groups": sorted(os.getgroups()),
        "cwd": os.getcwd(),
        "umask": mask,
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
        "env": {k: os.environ.get(k) for k in ("GREETING", "HOME", "PATH", "HERD_WORKER")},
        "can_bind_privileged": can_bind_privileged(),
    }
    body = json.dumps(facts).encode()

    def respond(conn, request_line):
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    serve(listener, respond, ready=True)


if __name__ == "__main__":
    main()
