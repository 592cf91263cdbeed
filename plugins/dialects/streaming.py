"""Deciding, per upstream request, how usage is obtained from a stream."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from plugins.dialects.base import StreamPlan

if TYPE_CHECKING:
    from gateway.exchange import Exchange

NOT_STREAMING = StreamPlan()


def plan_stream(exchange: Exchange, body: dict[str, Any], target_reports_usage: bool) -> StreamPlan:
    """Ask the target for usage when it can send it; otherwise strip the option and count ourselves."""
    if not exchange.stream:
        return NOT_STREAMING
    strict = exchange.inbound.strict_sse
    if target_reports_usage:
        if exchange.client_wants_usage:
            return StreamPlan(strict_framing=strict, usage_expected=True)
        options = body.get("stream_options")
        body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        return StreamPlan(withhold_usage_chunk=True, strict_framing=strict, usage_expected=True)
    body.pop("stream_options", None)
    return StreamPlan(synthesize_usage_chunk=exchange.client_wants_usage, strict_framing=strict)
