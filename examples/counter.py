#!/usr/bin/env python3
"""counter.py: workers that share a counter in herd's shared memory.

    herd run -w 4 -b http=127.0.0.1:8080 --shm counter=4096 -- python3 examples/counter.py
    curl http://127.0.0.1:8080/     # "hit 17 (pid 4321, worker 2)"

Workers share nothing unless they choose to. `--shm counter=4096` makes herd create a sealed
shared memory object and pass it like a socket: an fd named "counter" in LISTEN_FDNAMES. Each
worker maps it with mmap; the 8-byte counter at offset 0 is incremented under an fcntl lock on
that fd, so no increment is ever lost between workers. (Python has no atomic instructions; a
Rust worker uses AtomicU64::fetch_add instead: crates/herd/examples/counter.rs.) herd keeps the
memory across worker restarts, upgrades and re-execs, so the count survives them.
"""

import fcntl
import mmap
import os
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hello import listen_sockets, notify, serve  # noqa: E402


def main():
    inherited = listen_sockets()
    memory_fd = inherited.get("counter")
    if not isinstance(memory_fd, int):
        sys.exit("counter.py: run me with --shm counter=SIZE (and a --bind)")
    listener = next(s for s in inherited.values() if isinstance(s, socket.socket))
    memory = mmap.mmap(memory_fd, os.fstat(memory_fd).st_size)
    slot = os.environ.get("HERD_WORKER", "-")

    def next_hit():
        fcntl.lockf(memory_fd, fcntl.LOCK_EX)
        try:
            (hits,) = struct.unpack_from("=Q", memory, 0)
            struct.pack_into("=Q", memory, 0, hits + 1)
            return hits + 1
        finally:
            fcntl.lockf(memory_fd, fcntl.LOCK_UN)

    def respond(conn, request_line):
        body = f"hit {next_hit()} (pid {os.getpid()}, worker {slot})\n".encode()
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    notify("READY=1")
    serve(listener, respond)


if __name__ == "__main__":
    main()
