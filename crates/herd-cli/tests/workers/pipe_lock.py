"""Sends a notify socket (argv[1]) a pipe's writing end whose lock this process holds: a
splice from the pipe into a socket nobody reads waits for room, holding the pipe's lock, and
the release of the pipe's last writing end (the one in flight) waits for that lock, a wait no
signal ends. Prints 'sent' once it is sent; lets go once its stdin closes, and prints 'let go'."""
import array
import os
import socket
import sys
import threading
import time

reader, writer = os.pipe()
full, unread = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
full.setblocking(False)
try:
    while True:
        full.send(b"\0" * 4096)
except BlockingIOError:
    pass
full.setblocking(True)
os.write(writer, b"data")
splicing = threading.Thread(target=lambda: os.splice(reader, full.fileno(), 4), daemon=True)
splicing.start()
wchan = f"/proc/self/task/{splicing.native_id}/wchan"
for _ in range(500):
    with open(wchan) as f:
        if f.read() not in ("", "0"):
            break
    time.sleep(0.01)
else:
    sys.exit("the splice never waited")
sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
fds = array.array("i", [writer])
sender.sendmsg([b"STATUS=held"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)], 0, sys.argv[1])
os.close(writer)
print("sent", flush=True)
sys.stdin.read()
unread.setblocking(False)
while splicing.is_alive():
    try:
        unread.recv(1 << 16)
    except BlockingIOError:
        time.sleep(0.005)
print("let go", flush=True)
