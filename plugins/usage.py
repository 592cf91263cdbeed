"""``GET /v1/usage``: a team's consumption against each of its quotas, read from the store.

A team key sees its own team. An admin key (``admin.keys``) sees every team, or one with
``?team=NAME``. The figures are the limiter's own counters, so they agree with what admission
decides. Limits a team does not have are not counted, so they are not listed.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from aiohttp import web

from gateway.config import Config, Team
from gateway.errors import GatewayError, NotFound, ServiceUnavailable, StoreError, Unauthorized
from gateway.store import Store
from plugins.dialects import OPENAI
from plugins.dialects.base import bearer, json_response
from plugins.ratelimit import RateLimitPlugin

_PERIOD = {"rpm": "rolling 60 s", "tpm": "rolling 60 s", "tokens_per_day": "UTC day", "tokens_per_month": "UTC month"}


async def usage_response(request: web.Request, config: Config, limiter: RateLimitPlugin | None) -> web.Response:
    try:
        teams = _teams_for(request, config)
        payload = {
            "object": "usage",
            "teams": [await _team_usage(team, limiter.store if limiter else None, limiter) for team in teams],
        }
    except GatewayError as err:
        return OPENAI.render_error(err, request.headers.get("x-request-id", ""))
    return json_response(200, payload, {"Cache-Control": "no-store"})


def _teams_for(request: web.Request, config: Config) -> list[Team]:
    key = request.headers.get("api-key") or bearer(request)
    if not key:
        raise Unauthorized("You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.")
    digest = hashlib.sha256(key.encode()).digest()
    wanted = request.query.get("team")
    if any(hmac.compare_digest(digest, admin) for admin in config.admin_keys):
        if wanted is None:
            return list(config.teams.values())
        if wanted not in config.teams:
            raise NotFound(f"There is no team '{wanted}'.", param="team")
        return [config.teams[wanted]]
    team = config.keys.get(digest)
    if team is None:
        raise Unauthorized("Incorrect API key provided.")
    if wanted is not None and wanted != team.name:
        raise Unauthorized("Only an admin key may read another team's usage.")
    return [team]


async def _team_usage(team: Team, store: Store | None, limiter: RateLimitPlugin | None) -> dict[str, Any]:
    limits = {name: value for name, value in _limits(team).items() if value}
    usage: dict[str, Any] = {}
    if store is not None and limiter is not None and limits:
        try:
            counters = await store.read_usage(team.name, team.limits, window_ms=limiter.window_ms)
        except StoreError as exc:
            raise ServiceUnavailable("The quota store is unavailable; usage cannot be read now.") from exc
        for counter in counters:
            usage[counter.name] = {
                "limit": counter.limit,
                "used": counter.used,
                "remaining": counter.remaining,
                "resets_in_ms": counter.reset_ms,
                "period": _PERIOD.get(counter.name, ""),
            }
    return {"team": team.name, "limits": limits, "usage": usage}


def _limits(team: Team) -> dict[str, int | None]:
    limits = team.limits
    return {
        "rpm": limits.rpm,
        "tpm": limits.tpm,
        "tokens_per_day": limits.tokens_per_day,
        "tokens_per_month": limits.tokens_per_month,
    }
