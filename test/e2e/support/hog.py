"""Clients that send and never read: hog.py PORT COUNT SECONDS.

Opens COUNT connections to 127.0.0.1:PORT, each with a 4 KiB receive buffer (so that the
server's answers soon have nowhere to go and it stops reading), writes 1 MiB of pipelined GET
requests on each (or what the kernel takes in 3 s), prints "ready", the bytes written and how
many sockets took all of it, then holds the connections open for SECONDS (or until killed)
without reading a byte.
"""

import socket
import sys
import time

port, count, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
request = b"GET /hog HTTP/1.1\r\nHost: localhost\r\n\r\n" * 2000
sockets = []
for _ in range(count):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.setblocking(False)
    sockets.append(s)
each = 1 << 20
sent = [0] * count
deadline = time.monotonic() + 3
# Bounded: until every socket took its MiB, or 3 s.
while min(sent) < each and time.monotonic() < deadline:
    for i, s in enumerate(sockets):
        if sent[i] >= each:
            continue
        try:
            sent[i] += s.send(request[: each - sent[i]])
        except BlockingIOError:
            pass
    time.sleep(0.01)
print("ready", sum(sent), sum(1 for n in sent if n >= each), flush=True)
time.sleep(seconds)
