"""Access logs: one JSON line per request with who, what, where and how it ended; never a key."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import pytest
import structlog

from gateway.logs import configure
from tests.harness import OTHER_TEAM_KEY, SIM_KEY, TEAM_KEY, Served, gateway, matrix_config, scrape, sim_fault

BAD_KEY = "not-a-real-key-but-a-secret-0003"
TEAM_KEY_DIGEST = hashlib.sha256(TEAM_KEY.encode()).hexdigest()


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    """structlog configured as ``gateway run`` does it, writing to a file instead of stdout."""
    saved = structlog.get_config()
    path = tmp_path / "gateway.log"
    with path.open("w", encoding="utf-8") as file:
        configure("info", "json", file=file)
        try:
            yield path
        finally:
            structlog.configure(**saved)


def read_log(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def access_lines(path: Path) -> list[dict[str, Any]]:
    lines = [orjson.loads(line) for line in read_log(path).splitlines() if line.strip()]
    return [line for line in lines if line.get("event") == "request"]


async def call(session: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str]) -> str:
    """POST and read the whole answer; returns the request id the gateway answered with."""
    async with session.post(url, json=body, headers=headers) as resp:
        await resp.read()
        return resp.headers["x-request-id"]


def hello(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "Hello there"}], **extra}


async def test_one_line_per_request_with_every_field(log_file: Path, sim: Served) -> None:
    async with gateway(matrix_config(sim.url)) as gw, aiohttp.ClientSession() as session:
        bearer = {"Authorization": f"Bearer {TEAM_KEY}"}
        ids = {
            "ok": await call(session, f"{gw.url}/v1/chat/completions", hello("m-openai"), bearer),
            "stream": await call(
                session,
                f"{gw.url}/openai/deployments/m-azure/chat/completions?api-version=2024-10-21",
                {**hello("m-azure"), "stream": True},
                {"api-key": TEAM_KEY},
            ),
            "unknown": await call(session, f"{gw.url}/v1/chat/completions", hello("no-such-model"), bearer),
            "unauthorized": await call(
                session, f"{gw.url}/v1/chat/completions", hello("m-openai"), {"Authorization": "Bearer wrong"}
            ),
        }
    lines = access_lines(log_file)
    assert len(lines) == len(ids)
    # The client sees the upstream's x-request-id when it sent one; the line carries both.
    by_id = {line["upstream_request_id"] or line["request_id"]: line for line in lines}
    assert set(by_id) == set(ids.values())
    assert all(line["request_id"] for line in lines)

    ok = by_id[ids["ok"]]
    assert ok["team"] == "team-a" and len(ok["key_id"]) == 12 and TEAM_KEY_DIGEST.startswith(ok["key_id"])
    assert (ok["model"], ok["deployment"], ok["dialect"], ok["upstream_dialect"]) == (
        "m-openai",
        "dep-openai",
        "openai",
        "openai",
    )
    assert ok["status"] == 200 and ok["attempts"] == 1 and ok["stream"] is False
    assert (ok["prompt_tokens"], ok["completion_tokens"], ok["tokens_estimated"]) == (2, 5, False)
    assert 0 < ok["ttfb_ms"] <= ok["duration_ms"]
    assert ok["level"] == "info" and "timestamp" in ok

    stream = by_id[ids["stream"]]
    assert (stream["dialect"], stream["upstream_dialect"], stream["deployment"]) == ("azure", "azure", "dep-azure")
    assert stream["stream"] is True and stream["completion_tokens"] == 5 and stream["tokens_estimated"] is False

    unknown = by_id[ids["unknown"]]
    assert (unknown["status"], unknown["model"], unknown["deployment"], unknown["attempts"]) == (404, None, None, 0)
    unauthorized = by_id[ids["unauthorized"]]
    assert (unauthorized["status"], unauthorized["team"], unauthorized["key_id"]) == (401, None, "-")


async def test_no_key_reaches_the_logs_or_the_metrics(log_file: Path, sim: Served) -> None:
    async with gateway(matrix_config(sim.url)) as gw, aiohttp.ClientSession() as session:
        azure = f"{gw.url}/openai/deployments/m-azure/chat/completions?api-version=2024-10-21"
        foundry = f"{gw.url}/models/chat/completions?api-version=2024-05-01-preview"
        for key in (TEAM_KEY, OTHER_TEAM_KEY, BAD_KEY):
            await call(session, f"{gw.url}/v1/chat/completions", hello("m-openai"), {"Authorization": f"Bearer {key}"})
            await call(session, azure, hello("m-azure"), {"api-key": key})
            await call(session, foundry, hello("m-foundry"), {"api-key": key, "Authorization": f"Bearer {key}"})
        # Failures are logged with their message: an upstream 500, and the SDK's own retries.
        await sim_fault(sim, match="/v1/chat/completions", status=500)
        client = openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=TEAM_KEY, max_retries=0)
        async with client:
            with pytest.raises(openai.InternalServerError):
                await client.chat.completions.create(**hello("m-openai"))
        metrics = await scrape(gw.url)
    logged = read_log(log_file)
    assert len(access_lines(log_file)) == 10
    for secret in (TEAM_KEY, OTHER_TEAM_KEY, BAD_KEY, SIM_KEY):
        assert secret not in logged
        assert secret not in metrics


def test_console_format_is_for_people() -> None:
    saved = structlog.get_config()
    out = io.StringIO()
    try:
        configure("warning", "console", file=out)
        log = structlog.get_logger("gateway.access")
        log.info("request", status=200)  # below the level: dropped
        log.warning("request", status=503)
    finally:
        structlog.configure(**saved)
    text = out.getvalue()
    assert "status=503" in text and "status=200" not in text and not text.startswith("{")


def test_a_plain_info_line_renders_as_the_processor_chain_would(log_file: Path) -> None:
    """A context-free ``info`` is rendered directly (the access log's path); a bound one goes
    through the processors. Apart from the time and the bound key, the lines are the same."""
    log = structlog.get_logger("gateway.access")
    fields: dict[str, Any] = {"request_id": "r1", "team": "t", "status": 200, "ttfb_ms": 1.5, "error": None}
    log.info("request", **fields)
    log.bind(chain=True).info("request", **fields)
    log.info("request", odd=Path("/x"))  # not JSON-native: rendered as its repr, as the chain does
    direct, chained, odd = (orjson.loads(line) for line in read_log(log_file).splitlines())
    assert chained.pop("chain") is True
    assert direct.pop("timestamp") and chained.pop("timestamp")
    assert list(direct.items()) == list(chained.items())
    assert list(direct) == [*fields, "event", "level", "pid"]
    assert odd["odd"] == repr(Path("/x"))
