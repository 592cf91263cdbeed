"""Counts every request into Prometheus: requests, tokens, latencies, 429s and upstream failures.

Label values come only from config (team, model, deployment names), dialect names and status
codes, never from what a client sent, so a scan of made-up model names cannot grow the series.
"""

from __future__ import annotations

from gateway.errors import RateLimited, UpstreamUnavailable
from gateway.exchange import Exchange
from gateway.metrics import Metrics, status_reason
from gateway.plugin import Attempt, Plugin


class MetricsPlugin(Plugin):
    name = "metrics"

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def started(self, exchange: Exchange) -> None:
        self.metrics.requests_in_flight += 1

    async def attempted(self, exchange: Exchange, attempt: Attempt) -> None:
        if attempt.reason != "ok":
            reason = status_reason(attempt.status) if attempt.reason == "status" else attempt.reason
            self.metrics.upstream_error(attempt.deployment.name, reason)

    async def completed(self, exchange: Exchange) -> None:
        metrics = self.metrics
        metrics.requests_in_flight -= 1
        team = exchange.team.name if exchange.team is not None else ""
        model = exchange.model or ""  # set only once the name matched the config
        deployment = exchange.deployment.name if exchange.deployment is not None else ""
        status = exchange.status or 500  # 0: an unexpected failure, which aiohttp answers with 500
        metrics.request((team, model, deployment, exchange.inbound.name, status), exchange.elapsed_s, exchange.ttfb_s)
        usage = exchange.usage
        if usage is not None:
            tokens = (team, model, deployment, usage.estimated)
            metrics.count_tokens(tokens, usage.prompt_tokens, usage.completion_tokens)
        error = exchange.error
        if error is None:
            return
        if isinstance(error, RateLimited):
            metrics.rate_limit_hit(team, error.limit)
        elif isinstance(error, UpstreamUnavailable) and status < 400:
            # The stream broke after its 200 went out: no attempt reported it as failed.
            metrics.upstream_error(deployment, error.reason)
