"""The upstream client keeps no state between requests that one team could pass to another."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from tests.harness import OTHER_TEAM_KEY, TEAM_KEY, gateway, serve_app

COMPLETION = {
    "id": "c1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


class CookieSettingUpstream:
    """Sets a session cookie on every answer, as load balancers in front of deployments do."""

    def __init__(self) -> None:
        self.cookies_received: list[str | None] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        self.cookies_received.append(request.headers.get("Cookie"))
        response = web.json_response(COMPLETION)
        response.set_cookie("session", f"for-request-{len(self.cookies_received)}", path="/")
        return response


def config(upstream_url: str) -> str:
    return f"""
deployments:
  - {{name: lb, dialect: openai, url: {upstream_url}/v1, model: m, api_key: upstream-key}}
models:
  m: {{deployments: [lb]}}
teams:
  team-a: {{keys: [{TEAM_KEY}]}}
  team-b: {{keys: [{OTHER_TEAM_KEY}]}}
"""


async def test_an_upstreams_cookie_is_never_sent_on_a_later_request() -> None:
    upstream = CookieSettingUpstream()
    async with serve_app(upstream.app()) as served:
        # A host name, not an IP: aiohttp's default cookie jar ignores cookies from IP addresses,
        # so only a named upstream shows whether the gateway's client stores them.
        named = served.url.replace("127.0.0.1", "localhost")
        async with gateway(config(named)) as gw, aiohttp.ClientSession() as session:
            for key in (TEAM_KEY, OTHER_TEAM_KEY, TEAM_KEY):
                async with session.post(
                    f"{gw.url}/v1/chat/completions",
                    headers={"Authorization": f"Bearer {key}"},
                    json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
                ) as response:
                    assert response.status == 200
                    # Nor does a caller see the upstream's cookie: it belongs to the gateway's hop.
                    assert "Set-Cookie" not in response.headers
    assert upstream.cookies_received == [None, None, None]
