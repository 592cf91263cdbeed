"""A caller that stops reading loses its connection after ``send_timeout_s``, and the request is
recorded (tokens included) instead of holding its upstream and buffers for ever."""

from __future__ import annotations

import asyncio
import socket

import orjson

from tests.gateway.test_upstream_answers import one_deployment
from tests.gateway.test_upstream_client import CHAT, COMPLETION, RawUpstream, read_request
from tests.harness import TEAM_KEY, gateway, scrape_settled, total

EVENT = b'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"%s"}}]}\n\n' % (
    b"x" * 1000
)


def config(upstream_url: str) -> str:
    return one_deployment(upstream_url, server="send_timeout_s: 0.5")


class StalledCaller:
    """Sends one request, reads the status line, and then never reads again (a tiny receive
    buffer, so the gateway's writes soon wait)."""

    def __init__(self, gw_url: str, body: dict[str, object]) -> None:
        host, port = gw_url.removeprefix("http://").split(":")
        self.address = (host, int(port))
        payload = orjson.dumps(body)
        head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer %s\r\n" % TEAM_KEY.encode()
        framing = b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(payload)
        self.request = head + framing + payload
        self.sock = socket.socket()

    async def start(self) -> bytes:
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(self.sock, self.address)
        await loop.sock_sendall(self.sock, self.request)
        return await loop.sock_recv(self.sock, 64)

    def close(self) -> None:
        self.sock.close()


async def test_a_stream_to_a_caller_that_stopped_reading_is_cut_and_counted() -> None:
    upstream_gone = asyncio.Event()

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            while True:
                writer.write(b"%x\r\n%s\r\n" % (len(EVENT), EVENT))
                await writer.drain()
        except ConnectionError:
            upstream_gone.set()

    async with RawUpstream(endless) as upstream, gateway(config(upstream.url)) as gw:
        caller = StalledCaller(gw.url, {**CHAT, "stream": True})
        try:
            assert (await caller.start()).startswith(b"HTTP/1.1 200")
            text = await scrape_settled(
                gw.url, lambda t: total(t, "gateway_requests_total", status="499") == 1, timeout_s=10
            )
            # The upstream stops generating: its connection was dropped with the caller's.
            await asyncio.wait_for(upstream_gone.wait(), 5)
        finally:
            caller.close()
    # What was streamed before the cut is counted (estimated: no usage chunk came).
    assert total(text, "gateway_tokens_total", kind="completion", source="estimated") > 0


async def test_a_large_answer_to_a_caller_that_stopped_reading_is_cut_and_recorded() -> None:
    body = orjson.dumps({**COMPLETION, "choices": [{"index": 0, "message": {"content": "y" * (8 << 20)}}]})

    async def large(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
        writer.write(body)
        await writer.drain()
        await reader.read()

    async with RawUpstream(large) as upstream, gateway(config(upstream.url)) as gw:
        caller = StalledCaller(gw.url, CHAT)
        try:
            assert (await caller.start()).startswith(b"HTTP/1.1 200")
            text = await scrape_settled(
                gw.url, lambda t: total(t, "gateway_requests_total", team="team-a") == 1, timeout_s=10
            )
        finally:
            caller.close()
    assert total(text, "gateway_tokens_total", kind="prompt", source="reported") == COMPLETION["usage"]["prompt_tokens"]  # type: ignore[index]
