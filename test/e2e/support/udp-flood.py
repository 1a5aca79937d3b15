"""Floods a DNS service with queries, then reads the replies.

Run inside the service's network namespace (dns.test.ts starts it with nsenter). Arguments:
the service's port, its admin port, how many queries, how many client sockets they alternate
between, a pid to send SIGTERM to right after the flood and one scrape of /metrics (0: none),
then a command to run after that (such as a `tc` command that lets the replies through
faster). Every query asks for www.example.test A with its own id (its index), so every reply
has the same size. Prints one JSON object: the metrics lines about datagrams as scraped after
the flood (and, without a pid, once more after the replies), the ids of the replies each
socket got in the order they came, and how many replies were not NOERROR.
"""
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request

port, admin, count, sockets, stop_pid = (int(a) for a in sys.argv[1:6])
name = b"".join(bytes([len(label)]) + label for label in b"www.example.test".split(b"."))
clients = []
for _ in range(sockets):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # Root in its own namespace: room for every reply, so none is lost on this side.
    sock.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE
    sock.setsockopt(socket.SOL_SOCKET, 32, 64 << 20)  # SO_SNDBUFFORCE
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    clients.append(sock)
for i in range(count):
    clients[i % sockets].send(struct.pack(">HHHHHH", i, 0x0100, 1, 0, 0, 0) + name +
                              b"\0\0\1\0\1")
    # A breath every 100 queries: on a loaded machine a flood sent in one go mostly overflowed
    # the service's receive buffer, and too few replies came to fill its send buffer.
    if i % 100 == 99:
        time.sleep(0.002)


def scrape():
    """The service's metrics lines about datagrams."""
    url = f"http://127.0.0.1:{admin}/metrics"
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    return [line for line in text.splitlines() if line.startswith("reuseport_") and
            ("datagrams" in line or "udp_" in line)]


scraped = scrape()
if stop_pid > 0:
    os.kill(stop_pid, signal.SIGTERM)
if len(sys.argv) > 6:
    subprocess.run(sys.argv[6:], check=True, timeout=10)


def running(pid):
    """Whether the process is there and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


ids = [[] for _ in clients]
bad = 0
got = 0
# Until every reply came; with a pid, until it exited and no reply came for half a second
# (it sent what it had before exiting); else until none came for 3 seconds.
deadline = time.monotonic() + 30
while got < count and time.monotonic() < deadline:
    waiting = stop_pid > 0 and running(stop_pid)
    ready, _, _ = select.select(clients, [], [], 0.1 if waiting else 0.5 if stop_pid else 3)
    if not ready and not waiting:
        break
    for sock in ready:
        while True:
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                break
            got += 1
            ids[clients.index(sock)].append(struct.unpack(">H", data[:2])[0])
            if len(data) < 4 or data[3] & 0x0F != 0:
                bad += 1
# Without a pid the service is still there: its metrics once more, after the replies.
final = scrape() if stop_pid == 0 else []
print(json.dumps({"scraped": scraped, "final": final, "ids": ids, "bad": bad}))
