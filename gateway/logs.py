"""structlog set up once per process: JSON lines for machines, or a console renderer for people."""

from __future__ import annotations

import asyncio
import atexit
import functools
import logging
import os
import sys
import time
from select import PIPE_BUF
from typing import Any, TextIO

import orjson
import structlog
from structlog.typing import BindableLogger, EventDict, WrappedLogger

from gateway.config import LogFormat, LogLevel


def configure(level: LogLevel = "info", fmt: LogFormat = "json", file: TextIO | None = None) -> None:
    """``file`` defaults to stdout, read at call time so a redirected stdout is honoured."""
    out = file or sys.stdout
    renderer: structlog.typing.Processor = (
        # Colours only for a terminal: escape codes in a file or a collector are noise.
        structlog.dev.ConsoleRenderer(colors=out.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer(serializer=_dumps_line)
    )
    pid = os.getpid()
    writer = _LineWriter(out)  # one for every logger: lines keep their order in a shared batch

    def add_pid(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
        # Which process wrote the line: with several workers, one stdout carries all of them.
        event["pid"] = pid
        return event

    min_level = logging.getLevelNamesMapping()[level.upper()]
    wrapper: type[BindableLogger] = structlog.make_filtering_bound_logger(min_level)
    if fmt == "json" and min_level <= logging.INFO:
        wrapper = _direct_info(wrapper, pid)

    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            add_pid,
            _timestamp,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=wrapper,
        # One write() per line (PrintLogger's print() makes two under PYTHONUNBUFFERED): workers share
        # one stdout, and a line written whole (under PIPE_BUF) never interleaves with another's.
        logger_factory=lambda *_: writer,
        cache_logger_on_first_use=True,
    )


@functools.lru_cache(maxsize=4)
def _iso_second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def _timestamp(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """ISO 8601 UTC with microseconds, as structlog's TimeStamper writes it, with the date part
    formatted once a second: on the access log's path this was a third of the processors' cost."""
    now = time.time()
    second = int(now)
    event["timestamp"] = f"{_iso_second(second)}.{int((now - second) * 1_000_000):06d}Z"
    return event


def _direct_info(base: type[BindableLogger], pid: int) -> type[BindableLogger]:
    """``base`` whose ``info`` renders a plain event itself, with the keys, values and order the
    processor chain in ``configure`` gives (event fields, ``event``, ``level``, ``pid``,
    ``timestamp``), without the chain's calls and context copy. The access log's line per request
    takes this path; a bound context, positional arguments or ``exc_info`` take the chain."""

    class DirectInfo(base):  # type: ignore[misc, valid-type]
        def info(self, event: str, *args: Any, **kw: Any) -> Any:
            if args or self._context or "exc_info" in kw:
                return super().info(event, *args, **kw)
            kw["event"] = event
            kw["level"] = "info"
            kw["pid"] = pid
            self._logger.msg(_dumps_line(_timestamp(None, "info", kw), default=repr))
            return None

    return DirectInfo


def _dumps_line(obj: Any, **kwargs: Any) -> bytes:
    """orjson, newline included: a third of json's cost, and bytes ready for one write()."""
    return orjson.dumps(obj, default=kwargs.get("default"), option=orjson.OPT_APPEND_NEWLINE)


class _LineWriter:
    """Writes lines with ``os.write`` on the file's descriptor: no Python-level buffer to flush.

    The lines logged during one event-loop tick go out in a single write (the access log costs
    a syscall per tick, not per request), in batches of at most ``PIPE_BUF`` bytes: a write that
    size is atomic on a pipe, so workers sharing one stdout never interleave inside a line.
    Outside a running loop, each line is written at once.
    """

    def __init__(self, file: TextIO) -> None:
        self._file = file
        try:
            self._fd: int | None = file.fileno()
        except (AttributeError, OSError, ValueError):  # io.StringIO and friends
            self._fd = None
        if self._fd is not None:
            file.flush()  # anything printed before must come first
        self._batch: list[bytes] = []
        self._size = 0
        #: The loop a flush is scheduled on, while one is.
        self._flush_on: asyncio.AbstractEventLoop | None = None
        atexit.register(self._write_batch)

    def msg(self, message: str | bytes) -> None:
        line = message if isinstance(message, bytes) else (message + "\n").encode()
        if self._fd is None:
            self._file.write(line.decode())
            self._file.flush()
            return
        if self._flush_on is not None and not self._flush_on.is_closed():
            if self._size + len(line) > PIPE_BUF:
                self._write_batch()
            self._batch.append(line)
            self._size += len(line)
            return
        self._write_batch()  # left by a loop that closed before its flush ran
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write(line)
            return
        self._batch.append(line)
        self._size = len(line)
        self._flush_on = loop
        loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_on = None
        self._write_batch()

    def _write_batch(self) -> None:
        if self._batch:
            data = b"".join(self._batch)
            self._batch.clear()
            self._size = 0
            self._write(data)

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    log = debug = info = warn = warning = error = err = critical = fatal = exception = failure = msg
