#!/usr/bin/env python3
"""A recording proxy on loopback: forwards UDP datagrams and TCP streams
from clients to turnd and back, and writes what each side sent to files,
so real clients (coturn's turnutils_uclient, turnutils_stunclient) seed the
fuzz corpus. Only 127.0.0.1.

    record.py LISTEN_PORT TURND_PORT OUT_DIR [SECONDS]

Files: OUT_DIR/udp-CLIENT-SEQ-c2s (and -s2c), one datagram each;
OUT_DIR/tcp-CONN-c2s.stream (and -s2c.stream), each direction's whole
byte stream. CLIENT numbers client addresses in order of appearance.
"""

import os
import selectors
import socket
import sys
import time

HOST = "127.0.0.1"


def main():
    listen_port, turnd_port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 60.0
    os.makedirs(out, exist_ok=True)
    upstream = (HOST, turnd_port)
    sel = selectors.DefaultSelector()

    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((HOST, listen_port))
    sel.register(udp, selectors.EVENT_READ, ("udp-listen", None))
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind((HOST, listen_port))
    tcp.listen(16)
    sel.register(tcp, selectors.EVENT_READ, ("tcp-listen", None))

    clients = {}  # client address -> (number, upstream socket, seq)
    conns = 0
    deadline = time.monotonic() + seconds

    def write(name, data, mode="wb"):
        with open(os.path.join(out, name), mode) as f:
            f.write(data)

    while time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.2):
            kind, state = key.data
            if kind == "udp-listen":
                data, addr = udp.recvfrom(65535)
                if addr not in clients:
                    up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    up.bind((HOST, 0))
                    clients[addr] = [len(clients), up, 0]
                    sel.register(up, selectors.EVENT_READ, ("udp-up", addr))
                c = clients[addr]
                write("udp-%02d-%04d-c2s" % (c[0], c[2]), data)
                c[2] += 1
                c[1].sendto(data, upstream)
            elif kind == "udp-up":
                c = clients[state]
                data, _ = c[1].recvfrom(65535)
                write("udp-%02d-%04d-s2c" % (c[0], c[2]), data)
                c[2] += 1
                udp.sendto(data, state)
            elif kind == "tcp-listen":
                down, _ = tcp.accept()
                up = socket.create_connection(upstream)
                n = conns
                conns += 1
                sel.register(down, selectors.EVENT_READ, ("tcp", (n, down, up, "c2s")))
                sel.register(up, selectors.EVENT_READ, ("tcp", (n, up, down, "s2c")))
            else:
                n, src, dst, way = state
                data = src.recv(65536)
                if not data:
                    for s in (src, dst):
                        try:
                            sel.unregister(s)
                        except (KeyError, ValueError):
                            pass
                        s.close()
                    continue
                write("tcp-%02d-%s.stream" % (n, way), data, "ab")
                dst.sendall(data)


if __name__ == "__main__":
    main()
