#!/usr/bin/env python3
"""A decoy control server, as another local user could run one: it listens on every path given
and answers every request with success. Prints "ready" once it listens."""

import os
import selectors
import socket
import sys


def main():
    selector = selectors.DefaultSelector()
    for path in sys.argv[1:]:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        os.chmod(path, 0o666)
        listener.listen(16)
        selector.register(listener, selectors.EVENT_READ)
    print("ready", flush=True)
    while True:
        for key, _ in selector.select():
            conn, _ = key.fileobj.accept()
            with conn:
                conn.settimeout(5)
                try:
                    conn.recv(65536)
                    conn.sendall(b'{"version":1,"ok":true,"result":{"generation":2,"signalled":9,"stopped":true}}\n')
                except OSError:
                    pass


if __name__ == "__main__":
    main()
