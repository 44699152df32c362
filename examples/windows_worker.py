#!/usr/bin/env python3
"""windows_worker.py: a Python worker on Windows, taking its socket from herd's hand-off.

On Windows there is no fd inheritance to speak of: the parent duplicates each socket for this
process's pid (WSADuplicateSocketW) and writes the results to our stdin in herd's documented
format (crates/herd/src/share.rs, docs/windows.md). Python rebuilds a socket from such a blob
with socket.fromshare(). Start it as a worker of the Windows prefork program, or of anything
that speaks the format, e.g. from Rust:

    herd::windows::spawn(Command::new("python").arg("windows_worker.py"), &[Shared::Tcp("http", &l)])
"""

import os
import socket
import struct
import sys


def read_exactly(stream, n, what):
    data = stream.read(n)
    if len(data) != n:
        sys.exit(f"windows_worker.py: the socket hand-off is truncated: {what} is missing")
    return data


def shared_sockets():
    """Returns {name: socket} from the hand-off on stdin (HERD_SOCKETS=stdin)."""
    if os.environ.get("HERD_SOCKETS") != "stdin":
        return {}
    stdin = sys.stdin.buffer
    magic, version, count = struct.unpack("<4sHH", read_exactly(stdin, 8, "the header"))
    if magic != b"HERD" or version != 1:
        sys.exit(f"windows_worker.py: not a version-1 herd hand-off ({magic!r}, {version})")
    sockets = {}
    for _ in range(count):
        kind, name_len = struct.unpack("<BB", read_exactly(stdin, 2, "a socket's kind"))
        name = read_exactly(stdin, name_len, "a name").decode("ascii")
        (blob_len,) = struct.unpack("<H", read_exactly(stdin, 2, "a blob's length"))
        blob = read_exactly(stdin, blob_len, "a blob")
        sockets[name] = socket.fromshare(blob)  # kind: 1 = TCP listener, 2 = UDP
    return sockets


def main():
    sockets = shared_sockets()
    listener = sockets.get("http") or next(iter(sockets.values()), None)
    if listener is None:
        sys.exit("windows_worker.py: no sockets were handed over (HERD_SOCKETS is not set)")
    while True:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(f"worker pid {os.getpid()}\n".encode())


if __name__ == "__main__":
    main()
