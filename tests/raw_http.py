"""Raw HTTP over a socket, as no HTTP client library would send it (issue 24, item 5).

The malformed shapes of the issue (a chunk size `zz`, a duplicate or negative Content-Length,
HTTP/9.9, a header without a colon, a 20 kB header, a TLS ClientHello ...) and a seeded
generator of mangled variants, shared by tests/e2e/test_raw_edge.py (each function on its own)
and the chaos suite's hostile-input scenario (the whole local stack). `exchange` sends bytes
as they are and returns what came back; `status_of` reads the first status code.
"""

from __future__ import annotations

import contextlib
import random
import socket

# gunicorn answers a transfer coding it does not implement (`chunkfd`) with 501, as RFC 9112
# 6.1 says, before any code of ours runs: the one 5xx that is the server's own, counted apart.
UNKNOWN_CODING = b"Unsupported transfer coding"
# A path each function serves (the intake's order webhook, the console's list, else `/`).
PATHS = {"webhook_intake": "/webhooks/orders", "operator_console": "/sessions"}


def is_unknown_coding(answer: bytes) -> bool:
    return status_of(answer) == 501 and UNKNOWN_CODING in answer


def exchange(port: int, raw: bytes, *, close_write: bool = False, timeout: float = 10) -> bytes:
    """Send `raw` as is; what came back until the server closed (or `timeout` passed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        if close_write:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := sock.recv(65536):
                received += chunk
                if b"\r\n\r\n" in received and _complete(received):
                    break
        return received


def _complete(received: bytes) -> bool:
    head, _, body = received.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def status_of(answer: bytes) -> int | None:
    """The status code of the first response, None for a closed connection without one."""
    if not answer:
        return None
    parts = answer.split(b"\r\n", 1)[0].split()
    return int(parts[1])


# The shapes of issue 24, item 5: (name, bytes, close the write side after sending).
def malformed_requests(path: str) -> list[tuple[str, bytes, bool]]:
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    chunked = head + "Content-Type: {}\r\nTransfer-Encoding: chunked\r\n\r\n"
    return [
        ("chunk size zz", (chunked.format("application/json") + "zz\r\nabc\r\n0\r\n\r\n").encode(), False),
        ("chunk size zz, form", (chunked.format("application/x-www-form-urlencoded") + "zz\r\n").encode(), True),
        ("chunk size zz, text", (chunked.format("text/plain") + "zz\r\nabc\r\n0\r\n\r\n").encode(), False),
        ("chunk cut short", (chunked.format("application/json") + "5\r\nab").encode(), True),
        ("chunk without terminator", (chunked.format("application/json") + "2\r\nabcd\r\n0\r\n\r\n").encode(), False),
        ("duplicate Content-Length", (head + "Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}").encode(), False),
        ("negative Content-Length", (head + "Content-Length: -1\r\n\r\n{}").encode(), False),
        ("HTTP/9.9", f"POST {path} HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n".encode(), False),
        ("header without colon", (head + "NoColonHere\r\n\r\n").encode(), False),
        ("20 kB header", (head + "X-Padding: " + "a" * 20_000 + "\r\n\r\n").encode(), False),
        ("TLS ClientHello", bytes.fromhex("16030100a5010000a10303") + b"\x17" * 32 + b"\x00\x00\x02\x00\x2f\x01\x00",
         True),
    ]


def garbage_requests(path: str, count: int, seed: int) -> list[tuple[str, bytes, bool]]:
    """`count` raw requests mangled at random (seeded): the issue's shapes with a mangled byte,
    random chunk sizes, random header lines and methods, binary noise, cut-off requests."""
    rng = random.Random(seed)
    base = malformed_requests(path)
    methods = ["POST", "GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "CONNECT", "BREW", "P\x00ST", ""]
    made = []
    for n in range(count):
        kind = n % 6
        if kind == 0:
            name, raw, close = rng.choice(base)
            raw = bytearray(raw)
            raw[rng.randrange(len(raw))] = rng.randrange(256)
            made.append((f"mangled {name}", bytes(raw), True))
        elif kind == 1:
            size = rng.choice(["-1", "0x10", "fffffffffffffffff", "1;ext=\"x", " 5", "5 ", "\t3", "1e3", "g"])
            made.append((f"chunk size {size!r}", (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                                                  f"application/json\r\nTransfer-Encoding: chunked\r\n\r\n{size}\r\n"
                                                  f"abc\r\n0\r\n\r\n").encode(), True))
        elif kind == 2:
            header = rng.choice(["X: \x00", ": empty-name", "X-A:\r\n b", "Content-Length: 5, 5", "Content-Length: +5",
                                 "Transfer-Encoding: gzip, chunked", "Transfer-Encoding: chunked\r\nContent-Length: 3",
                                 "Host: a\r\nHost: b", "X-\u00e9: 1", "Expect: 100-continue"])
            made.append((f"header {header[:20]!r}", (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{header}\r\n"
                                                     f"Content-Length: 2\r\n\r\n{{}}").encode("utf-8"), True))
        elif kind == 3:
            method = rng.choice(methods)
            version = rng.choice(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1 extra", "http/1.1", "HTTP/01.1", ""])
            made.append((f"request line {method!r} {version!r}",
                         f"{method} {path} {version}\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n".encode("utf-8",
                                                                                                             "replace"),
                         True))
        elif kind == 4:
            made.append(("binary noise", bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400))), True))
        else:
            name, raw, _ = rng.choice(base)
            made.append((f"cut {name}", raw[: rng.randrange(1, len(raw))], True))
    return made
