"""One structured line per request: who, what, where it went, how it ended, what it cost."""

from __future__ import annotations

import structlog

from gateway.exchange import Exchange
from gateway.plugin import Plugin


class AccessLog(Plugin):
    name = "access_log"

    def __init__(self) -> None:
        self._log = structlog.get_logger("gateway.access")

    async def completed(self, exchange: Exchange) -> None:
        usage = exchange.usage
        self._log.info(
            "request",
            request_id=exchange.request_id,
            upstream_request_id=exchange.upstream_request_id,
            team=exchange.team.name if exchange.team else None,
            key_id=exchange.key_id,
            model=exchange.model,
            deployment=exchange.deployment.name if exchange.deployment else None,
            dialect=exchange.inbound.name,
            upstream_dialect=exchange.deployment.dialect if exchange.deployment else None,
            op=exchange.op,
            stream=exchange.stream,
            status=exchange.status,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            tokens_estimated=usage.estimated if usage else False,
            ttfb_ms=round(exchange.ttfb_s * 1000, 2) if exchange.ttfb_s is not None else None,
            duration_ms=round(exchange.elapsed_s * 1000, 2),
            attempts=exchange.attempts,
            error=exchange.error.message if exchange.error and exchange.status >= 500 else None,
            client_gone=exchange.client_gone or None,
        )
