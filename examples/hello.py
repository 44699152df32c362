#!/usr/bin/env python3
"""hello.py: the classic prefork demo, done right, for herd.

A single-threaded HTTP worker that takes its listening socket from systemd-style socket
activation (LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID), blocks in accept(), and answers every
request with its pid and herd worker slot. Start four of them sharing one port:

    herd run -w 4 -b http=127.0.0.1:8080 -- python3 examples/hello.py
    curl http://127.0.0.1:8080/

On SIGTERM it finishes the request it is serving, then exits; an idle worker exits at once.
Standard library only.
"""

import os
import signal
import socket
import sys

LISTEN_FDS_START = 3


def listen_sockets():
    """Returns {name: socket} for the inherited sockets, as sd_listen_fds_with_names(3) does.

    The fds are meant for this process only if LISTEN_PID is our own pid (a wrapper that forked
    after setting it would be wrong). The variables are removed afterwards so that programs we
    might start do not mistake the fds for theirs.
    """
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return {}
    count = int(os.environ.get("LISTEN_FDS", "0"))
    names = os.environ.get("LISTEN_FDNAMES", ":".join(["unknown"] * count)).split(":")
    if len(names) != count:
        raise SystemExit(f"hello.py: LISTEN_FDNAMES has {len(names)} names for {count} fds")
    for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(var, None)
    sockets = {}
    for i, name in enumerate(names):
        fd = LISTEN_FDS_START + i
        os.set_inheritable(fd, False)
        sockets.setdefault(name, socket.socket(fileno=fd))
    return sockets


def read_request(conn):
    """Reads the request head (up to 64 KiB); returns the request line."""
    conn.settimeout(10)  # on the accepted connection only, never on the shared listener
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0].decode("latin-1")


def main():
    sockets = listen_sockets()
    if not sockets:
        sys.exit("hello.py: no sockets inherited; run me under herd: "
                 "herd run -b http=127.0.0.1:8080 -- python3 examples/hello.py")
    listener = sockets.get("http") or next(iter(sockets.values()))
    slot = os.environ.get("HERD_WORKER", "-")
    pid = os.getpid()
    state = {"busy": False, "stopping": False}

    def on_stop(signum, frame):
        state["stopping"] = True
        if not state["busy"]:
            sys.exit(0)  # interrupts accept(); nothing was taken from the queue

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)

    while not state["stopping"]:
        conn, _ = listener.accept()
        state["busy"] = True
        try:
            request = read_request(conn)
            body = f"hello from pid {pid}, worker {slot}\n".encode()
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            del request
        except OSError:
            pass  # a client that went away never stops the worker
        finally:
            conn.close()
            state["busy"] = False


if __name__ == "__main__":
    main()
