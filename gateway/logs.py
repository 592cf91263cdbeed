"""structlog set up once per process: JSON lines for machines, or a console renderer for people."""

from __future__ import annotations

import logging
import os
import sys

import structlog
from structlog.typing import EventDict, WrappedLogger


def configure(level: str = "info", fmt: str = "json") -> None:
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer() if fmt == "console" else structlog.processors.JSONRenderer()
    )
    pid = os.getpid()

    def add_pid(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
        # Which process wrote the line: with several workers, one stdout carries all of them.
        event["pid"] = pid
        return event

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            add_pid,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        # One write() per line (PrintLogger's print() makes two under PYTHONUNBUFFERED): workers share
        # one stdout, and a line written whole (under PIPE_BUF) never interleaves with another's.
        logger_factory=structlog.WriteLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
