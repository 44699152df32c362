"""A FastCGI responder the way supervisord's fcgi-program runs one: the listening socket is
standard input (FCGI_LISTENSOCK_FILENO = 0), told from a connection by getpeername failing
with ENOTCONN, as libfcgi's FCGX_IsCGI does. Answers every request with its pid."""

import errno
import os
import socket
import struct
import sys

HEADER = struct.Struct("!BBHHBx")
BEGIN_REQUEST, END_REQUEST, PARAMS, STDIN, STDOUT = 1, 3, 4, 5, 6


def listening_stdin():
    sock = socket.socket(fileno=os.dup(0))
    try:
        sock.getpeername()
    except OSError as e:
        if e.errno == errno.ENOTCONN:
            return sock
        raise
    sys.exit("stdin is a connection, not a listening socket: not started as a FastCGI program")


def read_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def record(kind, request_id, content):
    return HEADER.pack(1, kind, request_id, len(content), 0) + content


def serve(conn):
    request_id = None
    while True:
        _, kind, rid, length, padding = HEADER.unpack(read_exact(conn, HEADER.size))
        read_exact(conn, length + padding)
        if kind == BEGIN_REQUEST:
            request_id = rid
        if kind == STDIN and length == 0:
            break
    body = f"fcgi pid {os.getpid()}\n".encode()
    reply = b"Content-Type: text/plain\r\n\r\n" + body
    conn.sendall(
        record(STDOUT, request_id, reply)
        + record(STDOUT, request_id, b"")
        + record(END_REQUEST, request_id, struct.pack("!IB3x", 0, 0))
    )


def main():
    server = listening_stdin()
    server.setblocking(True)
    while True:
        conn, _ = server.accept()
        with conn:
            try:
                serve(conn)
            except EOFError:
                pass


main()
