#!/usr/bin/env python3
"""A TCP service on 127.0.0.1 and its client in one process: 64-byte requests and answers at a
low rate over a few connections, nothing lost (the fallback for `oncall-fault netloss --loss-pct 0`).

  echo_pair.py [--rate-per-s R] [--conns N] --seconds S

Prints `ready pid=<pid> port=<port>` once the connections are up; exits by itself at the deadline.
"""
import argparse
import os
import socket
import threading
import time


def serve(c):
    with c:
        while True:
            buf = b""
            while len(buf) < 64:
                part = c.recv(64 - len(buf))
                if not part:
                    return
                buf += part
            c.sendall(buf)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate-per-s", type=float, default=5)
    ap.add_argument("--conns", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=60)
    a = ap.parse_args()
    deadline = time.time() + a.seconds
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(16)
    port = lst.getsockname()[1]

    def accept():
        while True:
            c, _ = lst.accept()
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(a.conns)]
    print(f"ready pid={os.getpid()} port={port}", flush=True)
    i, t0 = 0, time.time()
    while time.time() < deadline:
        c = clients[i % len(clients)]
        c.sendall(bytes([i & 0xFF]) * 64)
        got = b""
        while len(got) < 64:
            got += c.recv(64 - len(got))
        i += 1
        time.sleep(max(0.0, min(t0 + i / a.rate_per_s, deadline) - time.time()))


if __name__ == "__main__":
    main()
