#!/usr/bin/env python3
"""Tiny TCP tools for the namespace lab (scripts/demo).

  tcp.py serve NAME ADDRESS PORT [PORT…]     answer every connection with NAME, then close
  tcp.py split ADDRESS PORT COUNT [options]  open COUNT connections, print how many each NAME answered
      --expect NAME=SHARE   the share NAME should get (9/10, 0.9 or 90%); repeat per endpoint;
                            repeating a NAME adds up. With it, the output is a table with the
                            expected share and the deviation in standard deviations.
      --timeout S           per connection (connect and read), default 2
      --deadline S          stop opening connections after S seconds in all, default 60
                            (SIGTERM stops it early too; what was measured is printed)
      --record FILE         append the result as one JSON line, for `summary`
      --label TEXT          the phase name in that line
  tcp.py probe ADDRESS PORT [--timeout S] [--record FILE --label TEXT] [--expect TEXT]
                            one connection: how it ended (answer, refused, reset, timeout) and when
  tcp.py summary FILE       the recorded phases as a table: expected and measured shares

Every socket operation has a timeout and every loop is bounded by a count or a deadline, so
nothing hangs. Traffic only goes to addresses inside the lab's own network namespaces.
"""
import argparse
import collections
import errno
import json
import math
import os
import signal
import socket
import sys
import threading
import time
from fractions import Fraction


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
                connection.settimeout(2)
                connection.sendall(name.encode())
            except OSError:
                pass
            finally:
                connection.close()

    for port in ports:
        threading.Thread(target=loop, args=(port,), daemon=True).start()
    while True:
        time.sleep(3600)


def share(text: str) -> Fraction:
    """9/10, 0.9 or 90% → Fraction(9, 10)."""
    text = text.strip()
    if text.endswith("%"):
        return Fraction(text[:-1]) / 100
    return Fraction(text)


def expectations(pairs: list[str]) -> dict[str, Fraction]:
    expected: dict[str, Fraction] = {}
    for pair in pairs:
        name, separator, value = pair.rpartition("=")
        if not separator or not name:
            sys.exit(f"tcp.py: --expect wants NAME=SHARE, got {pair!r}")
        expected[name] = expected.get(name, Fraction(0)) + share(value)
    return expected


def error_text(error: OSError) -> str:
    if isinstance(error, (socket.timeout, TimeoutError)):
        return "timeout"
    if error.errno is not None and error.errno in errno.errorcode:
        return errno.errorcode[error.errno]  # ECONNREFUSED, ECONNRESET, …
    return str(error)


def split(address: str, port: int, count: int, expected: dict[str, Fraction],
          timeout: float, deadline: float, record: str | None, label: str | None) -> None:
    answers: collections.Counter[str] = collections.Counter()
    started = time.monotonic()
    opened = 0
    # SIGTERM ends the run early but still prints what was measured (a test's background load).
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    for _ in range(count):
        if stopping.is_set() or time.monotonic() - started > deadline:
            break
        opened += 1
        try:
            with socket.create_connection((address, port), timeout=timeout) as connection:
                connection.settimeout(timeout)
                answers[connection.recv(256).decode() or "(empty answer)"] += 1
        except OSError as error:
            answers[f"error: {error_text(error)}"] += 1
    elapsed = time.monotonic() - started

    if not expected:  # the original, tab-separated form
        for name, hits in sorted(answers.items()):
            print(f"{name}\t{hits}\t{hits / count:.4f}")
        print(f"total\t{count}\t{elapsed:.2f}s", file=sys.stderr)
    else:
        names = list(expected) + sorted(set(answers) - set(expected))
        width = max(len("endpoint"), *(len(name) for name in names))
        print(f"  {'endpoint':<{width}}  {'hits':>5}  {'share':>6}  {'expected':>8}  deviation")
        for name in names:
            hits = answers.get(name, 0)
            want = float(expected.get(name, 0))
            measured = hits / opened if opened else 0.0
            sigma = math.sqrt(want * (1 - want) / opened) if opened else 0.0
            if sigma > 0:
                deviation = f"{(measured - want) / sigma:+.1f} σ"
            else:
                deviation = "exact" if measured == want else "UNEXPECTED"
            print(f"  {name:<{width}}  {hits:>5}  {measured:>6.1%}  {want:>8.1%}  {deviation}")
        rate = opened / elapsed if elapsed > 0 else 0
        note = "" if opened == count else f" (stopped at the {deadline:g} s deadline; {count} asked)"
        print(f"  {'total':<{width}}  {opened:>5}  in {elapsed:.2f} s, {rate:,.0f} connections/s{note}")

    if record:
        line = {"label": label or f"{address}:{port}", "kind": "split", "connections": opened,
                "expected": {name: float(value) for name, value in expected.items()},
                "hits": dict(answers), "seconds": round(elapsed, 3)}
        with open(record, "a") as file:
            file.write(json.dumps(line) + "\n")
    if opened < count:
        sys.exit(1)


def probe(address: str, port: int, timeout: float, record: str | None, label: str | None, expect: str | None) -> None:
    started = time.monotonic()
    try:
        with socket.create_connection((address, port), timeout=timeout) as connection:
            connection.settimeout(timeout)
            outcome = f"answered {connection.recv(256).decode()!r}"
    except OSError as error:
        code = error_text(error)
        outcome = {"ECONNREFUSED": "refused (TCP reset)", "timeout": "no answer"}.get(code, code)
    milliseconds = (time.monotonic() - started) * 1000
    when = f"within {timeout:g} s" if outcome == "no answer" else f"after {milliseconds:.1f} ms"
    print(f"  connect {address}:{port}: {outcome} {when}")
    if record:
        line = {"label": label or f"{address}:{port}", "kind": "probe", "expected": expect or "",
                "measured": f"{outcome} {when}"}
        with open(record, "a") as file:
            file.write(json.dumps(line) + "\n")


def summary(path: str) -> None:
    with open(path) as file:
        phases = [json.loads(line) for line in file if line.strip()]
    names: list[str] = []  # endpoints in order of first appearance
    for phase in phases:
        if phase["kind"] == "split":
            for name in list(phase["expected"]) + sorted(phase["hits"]):
                if name not in names and not name.startswith("error: "):
                    names.append(name)
    short = [name.split()[0] for name in names]

    def shares(values: list[float]) -> str:
        return " / ".join(f"{value:5.1%}" for value in values)

    rows = []
    for phase in phases:
        if phase["kind"] == "split":
            total = phase["connections"] or 1
            expected = shares([phase["expected"].get(name, 0.0) for name in names])
            measured = shares([phase["hits"].get(name, 0) / total for name in names])
            errors = sum(hits for name, hits in phase["hits"].items() if name.startswith("error: "))
            if errors:
                measured += f"  ({errors} failed)"
            rows.append((phase["label"], str(phase["connections"]), expected, measured))
        else:
            rows.append((phase["label"], "1", phase["expected"], phase["measured"]))
    header = ("phase", "conns", f"expected ({' / '.join(short)})", f"measured ({' / '.join(short)})")
    widths = [max(len(row[i]) for row in rows + [header]) for i in range(3)]
    for row in [header] + rows:
        print(f"  {row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}")


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ("serve", "split", "probe", "summary", "-h", "--help"):
        sys.exit(__doc__)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     usage=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("serve")
    command.add_argument("name")
    command.add_argument("address")
    command.add_argument("ports", nargs="+", type=int)
    command = commands.add_parser("split")
    command.add_argument("address")
    command.add_argument("port", type=int)
    command.add_argument("count", type=int)
    command.add_argument("--expect", action="append", default=[])
    command.add_argument("--timeout", type=float, default=2.0)
    command.add_argument("--deadline", type=float, default=60.0)
    command.add_argument("--record")
    command.add_argument("--label")
    command = commands.add_parser("probe")
    command.add_argument("address")
    command.add_argument("port", type=int)
    command.add_argument("--timeout", type=float, default=2.0)
    command.add_argument("--record")
    command.add_argument("--label")
    command.add_argument("--expect")
    command = commands.add_parser("summary")
    command.add_argument("file")
    arguments = parser.parse_args()
    if arguments.command != "serve":
        # Ctrl-C reaches both this process and `timeout` (which passes it on): leave at once, quietly.
        signal.signal(signal.SIGINT, lambda *_: os._exit(130))

    if arguments.command == "serve":
        serve(arguments.name, arguments.address, arguments.ports)
    elif arguments.command == "split":
        if arguments.count < 1:
            sys.exit("tcp.py: COUNT must be at least 1")
        split(arguments.address, arguments.port, arguments.count, expectations(arguments.expect),
              arguments.timeout, arguments.deadline, arguments.record, arguments.label)
    elif arguments.command == "probe":
        probe(arguments.address, arguments.port, arguments.timeout, arguments.record, arguments.label, arguments.expect)
    else:
        summary(arguments.file)


if __name__ == "__main__":
    main()
