"""Time to first body byte at concurrency 1, timed on a raw keep-alive socket.

A blocking socket keeps the client's own overhead out of the measurement: the clock runs from
the last request byte sent to the first body byte received, and everything else (parsing, reading
the rest of the stream) happens outside it.
"""

from __future__ import annotations

import socket
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_CRLF = b"\r\n"


@dataclass
class TtfbResult:
    samples_ms: list[float]
    total_ms: list[float]
    errors: int

    def pct(self, q: float, which: str = "ttfb") -> float:
        data = sorted(self.samples_ms if which == "ttfb" else self.total_ms)
        if not data:
            return float("nan")
        return data[min(len(data) - 1, round(q / 100 * (len(data) - 1)))]

    def as_dict(self) -> dict[str, Any]:
        return {"requests": len(self.samples_ms), "errors": self.errors,
                "ttfb_ms": {"p50": self.pct(50), "p90": self.pct(90), "p99": self.pct(99),
                            "mean": statistics.fmean(self.samples_ms) if self.samples_ms else None},
                "stream_total_ms": {"p50": self.pct(50, "total"), "p99": self.pct(99, "total")}}


class _Response:
    """Incremental HTTP/1.1 response reader: knows when the first body byte and the end arrived."""

    def __init__(self) -> None:
        self.buf = b""
        self.status = 0
        self.body_at = -1  # offset of the body in buf, once headers are complete
        self.length: int | None = None  # Content-Length, or None for chunked
        self.close = False
        self._pos = 0  # chunked: offset of the next chunk-size line

    def feed(self, data: bytes) -> None:
        self.buf += data
        if self.body_at < 0 and (end := self.buf.find(b"\r\n\r\n")) >= 0:
            head = self.buf[:end].decode("latin-1").split("\r\n")
            self.status = int(head[0].split(" ", 2)[1])
            fields = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:])}
            self.close = fields.get("connection", "").lower() == "close"
            if "content-length" in fields:
                self.length = int(fields["content-length"])
            elif "chunked" not in fields.get("transfer-encoding", "").lower():
                raise ValueError("response has neither Content-Length nor chunked encoding")
            self.body_at = self._pos = end + 4

    def has_body_byte(self) -> bool:
        if self.body_at < 0:
            return False
        if self.length is not None:
            return self.length == 0 or len(self.buf) > self.body_at
        line_end = self.buf.find(_CRLF, self.body_at)
        return line_end >= 0 and len(self.buf) > line_end + 2

    def complete(self) -> bool:
        if self.body_at < 0:
            return False
        if self.length is not None:
            return len(self.buf) >= self.body_at + self.length
        while (line_end := self.buf.find(_CRLF, self._pos)) >= 0:
            size = int(self.buf[self._pos:line_end].split(b";")[0], 16)
            chunk_end = line_end + 2 + size + 2
            if len(self.buf) < chunk_end:
                return False
            if size == 0:
                return True
            self._pos = chunk_end
        return False


def request_bytes(port: int, path: str, body: bytes, headers: Mapping[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def measure(port: int, path: str, body: bytes, headers: Mapping[str, str], duration_s: float, *,
            max_requests: int = 100_000) -> TtfbResult:
    req = request_bytes(port, path, body, headers)
    result = TtfbResult([], [], 0)
    sock = _connect(port)
    deadline = time.monotonic() + duration_s
    try:
        while time.monotonic() < deadline and len(result.samples_ms) < max_requests:
            resp = _Response()
            start = time.perf_counter_ns()
            sock.sendall(req)
            first = 0
            while True:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("server closed the connection mid-response")
                resp.feed(data)
                if not first and resp.has_body_byte():
                    first = time.perf_counter_ns()
                if first and resp.complete():
                    break
            done = time.perf_counter_ns()
            if 200 <= resp.status < 300:
                result.samples_ms.append((first - start) / 1e6)
                result.total_ms.append((done - start) / 1e6)
            else:
                result.errors += 1
            if resp.close:
                sock.close()
                sock = _connect(port)
    finally:
        sock.close()
    return result
