"""What an upstream may answer: no compression asked for, bounded answers, and a body that
breaks off before anything reached the caller fails over like a refused connection."""

from __future__ import annotations

import asyncio
import zlib

import aiohttp
import orjson

from tests.gateway.test_upstream_client import AUTH, BODY, CHAT, RawUpstream, post, read_request
from tests.harness import TEAM_KEY, gateway, scrape_settled, total

JSON_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"


def two_deployments(first: str, second: str, server: str = "") -> str:
    """Model ``m`` on ``first`` then ``second`` (priority order), with metrics on."""
    return f"""
server: {{{server}}}
deployments:
  - {{name: first, dialect: openai, url: {first}/v1, model: m, api_key: k1, priority: 0}}
  - {{name: second, dialect: openai, url: {second}/v1, model: m, api_key: k2, priority: 1}}
models:
  m: {{deployments: [first, second]}}
teams:
  team-a: {{keys: [{TEAM_KEY}]}}
"""


def one_deployment(url: str, server: str = "", store: str = "memory://") -> str:
    """Model ``m`` on one openai deployment at ``url``; ``server``: the keys inside ``server: {}``."""
    return f"""
server: {{{server}}}
store: {{url: "{store}", timeout_ms: 50}}
deployments:
  - {{name: only, dialect: openai, url: {url}/v1, model: m, api_key: k1}}
models:
  m: {{deployments: [only]}}
teams:
  team-a: {{keys: [{TEAM_KEY}]}}
"""


async def answer_whole(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        await read_request(reader)
        writer.write(JSON_HEAD + b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY))
        await writer.drain()


async def truncate(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Headers and the start of the body, then a reset."""
    await read_request(reader)
    writer.write(JSON_HEAD + b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY[:20]))
    await writer.drain()
    writer.transport.abort()


async def unavailable(gw_url: str) -> str:
    """The message of the 502 a request through ``gw_url`` gets."""
    status, body = await post(gw_url)
    error = orjson.loads(body)["error"]
    assert (status, error["code"]) == (502, "upstream_unavailable")
    return str(error["message"])


async def test_upstreams_are_asked_for_an_uncompressed_answer() -> None:
    heads: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head, _ = await read_request(reader)
        heads.append(head.lower())
        writer.write(JSON_HEAD + b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY))
        await writer.drain()

    async with RawUpstream(answer) as upstream, gateway(one_deployment(upstream.url)) as gw:
        assert await post(gw.url) == (200, BODY)
    assert b"\r\naccept-encoding: identity\r\n" in heads[0]


async def test_a_body_that_breaks_off_fails_over_and_counts_against_the_deployment() -> None:
    async with (
        RawUpstream(truncate) as first,
        RawUpstream(answer_whole) as second,
        gateway(two_deployments(first.url, second.url)) as gw,
    ):
        assert await post(gw.url) == (200, BODY)
        assert (first.connections, second.connections) == (1, 1)
        text = await scrape_settled(
            gw.url, lambda t: total(t, "gateway_upstream_errors_total", deployment="first") == 1
        )
        assert total(text, "gateway_upstream_errors_total", deployment="first", reason="broken") == 1
        assert total(text, "gateway_requests_total", deployment="second", status="200") == 1


async def test_a_body_that_breaks_off_at_the_last_deployment_is_a_502_in_the_callers_dialect() -> None:
    async with RawUpstream(truncate) as upstream, gateway(one_deployment(upstream.url)) as gw:
        assert "broke off" in await unavailable(gw.url)


async def test_an_answer_over_max_response_bytes_is_refused_without_failover() -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)  # no Content-Length: the limit trips while the body arrives
        writer.write(JSON_HEAD + b"Transfer-Encoding: chunked\r\n\r\n")
        for _ in range(64):
            writer.write(b"400\r\n%s\r\n" % (b" " * 1024))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await reader.read()

    async with (
        RawUpstream(chunked) as first,
        RawUpstream(answer_whole) as second,
        gateway(two_deployments(first.url, second.url, server="max_response_bytes: 16384")) as gw,
    ):
        assert "max_response_bytes (16384 bytes)" in await unavailable(gw.url)
        assert second.connections == 0  # as large there: not sent again
        text = await scrape_settled(
            gw.url, lambda t: total(t, "gateway_upstream_errors_total", reason="too_large") == 1
        )
        assert total(text, "gateway_upstream_errors_total", deployment="first", reason="too_large") == 1


async def test_a_declared_length_over_max_response_bytes_is_refused_before_reading() -> None:
    async def declared(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(JSON_HEAD + b"Content-Length: 1000000000\r\n\r\n{")
        await writer.drain()
        await reader.read()  # the gateway hangs up rather than wait for a gigabyte

    async with (
        RawUpstream(declared) as upstream,
        gateway(one_deployment(upstream.url, server="max_response_bytes: 1000")) as gw,
    ):
        assert "max_response_bytes (1000 bytes)" in await unavailable(gw.url)
        assert "max_response_bytes (1000 bytes)" in await unavailable(gw.url)
    assert upstream.connections == 2  # the refused connection was not kept for reuse


def gzip_bomb(size: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = b"\0" * (1 << 20)
    return b"".join(packer.compress(block) for _ in range(size >> 20)) + packer.flush()


async def test_a_compressed_stream_that_expands_without_bound_is_cut_off() -> None:
    bomb = gzip_bomb(1 << 30)  # 1 GiB of zeros in about 1 MB

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Encoding: gzip\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(bomb), bomb)
        )
        await writer.drain()
        await reader.read()

    async with (
        RawUpstream(answer) as upstream,
        gateway(one_deployment(upstream.url)) as gw,
        aiohttp.ClientSession() as session,
        session.post(f"{gw.url}/v1/chat/completions", headers=AUTH, json={**CHAT, "stream": True}) as response,
    ):
        received = 0
        try:
            async for chunk in response.content.iter_any():
                received += len(chunk)
        except aiohttp.ClientPayloadError:
            pass  # the stream ended unterminated, as a broken upstream stream does
        text = await scrape_settled(
            gw.url, lambda t: total(t, "gateway_upstream_errors_total", reason="broken") == 1
        )
    # Without the bound the whole gigabyte would be inflated and relayed.
    assert received < 64 << 20
    assert total(text, "gateway_upstream_errors_total", deployment="only", reason="broken") == 1
