#!/usr/bin/env python3
"""Tiny TCP tools for the namespace lab (scripts/demo).

  tcp.py serve NAME ADDRESS PORT [PORT…]   answer every connection with NAME, then close
  tcp.py split ADDRESS PORT COUNT          open COUNT connections, print how many each NAME answered

Every socket operation has a timeout and the client loop is bounded by COUNT, so nothing hangs.
Traffic only goes to addresses inside the lab's own network namespaces.
"""
import collections
import socket
import sys
import threading
import time


def serve(name: str, address: str, ports: list[int]) -> None:
    def loop(port: int) -> None:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((address, port))
        listener.listen(1024)
        while True:
            connection, _ = listener.accept()
            try:
                connection.sendall(name.encode())
            finally:
                connection.close()

    for port in ports:
        threading.Thread(target=loop, args=(port,), daemon=True).start()
    while True:
        time.sleep(3600)


def split(address: str, port: int, count: int) -> None:
    answers: collections.Counter[str] = collections.Counter()
    started = time.monotonic()
    for _ in range(count):
        try:
            with socket.create_connection((address, port), timeout=2) as connection:
                connection.settimeout(2)
                answers[connection.recv(64).decode() or "(empty)"] += 1
        except OSError as error:
            answers[f"error: {error.strerror or error}"] += 1
    elapsed = time.monotonic() - started
    for name, hits in sorted(answers.items()):
        print(f"{name}\t{hits}\t{hits / count:.4f}")
    print(f"total\t{count}\t{elapsed:.2f}s", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3], [int(p) for p in sys.argv[4:]])
    elif len(sys.argv) == 5 and sys.argv[1] == "split":
        split(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(__doc__)
