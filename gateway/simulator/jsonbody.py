"""JSON encoding for simulator responses (orjson, as the gateway's hot path uses)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def json_response(value: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(value), status=status, headers=headers, content_type="application/json")


def parse(raw: bytes) -> Any:
    """Parse a request body; raises ``ValueError`` when it is not JSON."""
    return orjson.loads(raw)
