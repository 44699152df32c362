#!/usr/bin/env python3
"""windows_worker.py: a Python worker on Windows, taking its socket from herd's hand-off.

On Windows there is no fd inheritance to speak of: the parent duplicates each socket for this
process's pid (WSADuplicateSocketW) and writes the results to our stdin in herd's documented
format (crates/herd/src/share.rs, docs/windows.md). Python rebuilds a socket from such a blob
with socket.fromshare(). Start it as a worker of the Windows prefork program, or of anything
that speaks the format, e.g. from Rust:

    herd::windows::spawn(Command::new("python").arg("windows_worker.py"), &[Shared::Tcp("http", &l)])

It also speaks herd's other Windows channels (docs/windows.md, "A worker's channels on
Windows"): it says READY=1 on the notify pipe in NOTIFY_SOCKET, and stops accepting when herd
sets its stop event (HERD_STOP_EVENT), finishing the connection in hand.
"""

import ctypes
import os
import socket
import struct
import sys
import threading
import time

ERROR_PIPE_BUSY = 231
INFINITE = 0xFFFFFFFF


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


def notify(message):
    """Sends one message (READY=1, STATUS=..., WATCHDOG=1) to herd's notify pipe: one
    connection per message. Does nothing when herd gave no pipe."""
    pipe = os.environ.get("NOTIFY_SOCKET", "")
    if not pipe.lower().startswith("\\\\.\\pipe\\"):
        return
    deadline = time.monotonic() + 1
    while True:
        try:
            fd = os.open(pipe, os.O_WRONLY | os.O_BINARY)  # the pipe must exist: no O_CREAT
        except OSError as e:
            if getattr(e, "winerror", None) != ERROR_PIPE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.005)
            continue
        try:
            os.write(fd, message.encode())
        finally:
            os.close(fd)
        return


def on_stop_request(callback):
    """Calls callback, on a thread of its own, when herd sets this worker's stop event."""
    value = os.environ.pop("HERD_STOP_EVENT", None)
    if value is None:
        return
    kernel32 = ctypes.WinDLL("kernel32")
    kernel32.WaitForSingleObject.argtypes = [ctypes.c_void_p, ctypes.c_uint32]

    def wait():
        kernel32.WaitForSingleObject(int(value), INFINITE)
        callback()

    threading.Thread(target=wait, daemon=True).start()


def main():
    sockets = shared_sockets()
    listener = sockets.get("http") or next(iter(sockets.values()), None)
    if listener is None:
        sys.exit("windows_worker.py: no sockets were handed over (HERD_SOCKETS is not set)")
    stopping = threading.Event()

    def stop():
        stopping.set()
        listener.close()  # this worker's copy only: the other workers keep accepting

    on_stop_request(stop)
    notify("READY=1")
    while not stopping.is_set():
        try:
            conn, _ = listener.accept()
        except OSError:
            if stopping.is_set():
                break
            raise
        with conn:
            conn.sendall(f"worker pid {os.getpid()}\n".encode())
    notify("STOPPING=1")


if __name__ == "__main__":
    main()
