"""The pipelined hot-path connection against real redis-server processes."""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from gateway.config import Limits, StoreConfig
from gateway.store.pipelined import Connections, Endpoint, ReplyError, Script, encode
from gateway.store.redis import RedisStore
from tests.redis_servers import RedisClusterServers, RedisServer, require


def cli(server: RedisServer, *args: str) -> str:
    done = subprocess.run(
        [require("redis-cli"), "-p", str(server.port), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_commands_are_resp_arrays_of_bulk_strings() -> None:
    assert encode(("SET", "clé", 42, b"\x00\r\n")) == (
        b"*4\r\n$3\r\nSET\r\n$4\r\ncl\xc3\xa9\r\n$2\r\n42\r\n$3\r\n\x00\r\n\r\n"
    )


async def test_concurrent_callers_each_get_their_own_reply(redis_server: RedisServer) -> None:
    connections = Connections(Endpoint.from_url(redis_server.url))
    try:
        conn = await connections.get()
        replies = await asyncio.gather(*(conn.call("ECHO", f"caller-{n}") for n in range(500)))
        assert replies == [f"caller-{n}".encode() for n in range(500)]
        with pytest.raises(ReplyError, match="unknown command"):
            await conn.call("NO-SUCH-COMMAND")
        assert await conn.call("ECHO", "after an error") == b"after an error"
    finally:
        connections.close()


async def test_a_caller_that_gave_up_does_not_shift_the_replies_after_it(disposable_redis: RedisServer) -> None:
    connections = Connections(Endpoint.from_url(disposable_redis.url))
    try:
        conn = await connections.get()
        disposable_redis.freeze()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(conn.call("ECHO", "abandoned"), 0.2)
        later = conn.call("ECHO", "mine")
        disposable_redis.thaw()
        assert await asyncio.wait_for(later, 5) == b"mine"
    finally:
        disposable_redis.thaw()
        connections.close()


async def test_a_lost_connection_fails_its_callers_and_the_next_call_reconnects(
    disposable_redis: RedisServer,
) -> None:
    connections = Connections(Endpoint.from_url(disposable_redis.url))
    try:
        conn = await connections.get()
        disposable_redis.freeze()
        waiting = conn.call("ECHO", "never answered")
        await asyncio.sleep(0.05)
        disposable_redis.kill()
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(waiting, 5)
        with pytest.raises(ConnectionError):
            await conn.call("PING")  # a lost connection refuses at once
        disposable_redis.start()
        fresh = await connections.get()
        assert fresh is not conn
        assert await fresh.call("PING") == b"PONG"
    finally:
        connections.close()


async def test_a_flushed_script_is_loaded_again(redis_server: RedisServer) -> None:
    connections = Connections(Endpoint.from_url(redis_server.url))
    script = Script("return {KEYS[1], ARGV[1]}")
    try:
        conn = await connections.get()
        assert await script.run(conn, ["k"], [7]) == [b"k", b"7"]
        cli(redis_server, "SCRIPT", "FLUSH")
        assert await script.run(conn, ["k"], ["again"]) == [b"k", b"again"]
    finally:
        connections.close()


async def test_user_password_and_database_come_from_the_url(disposable_redis: RedisServer) -> None:
    cli(disposable_redis, "ACL", "SETUSER", "gateway", "on", ">s3cret", "~*", "+@all")
    port = disposable_redis.port
    connections = Connections(Endpoint.from_url(f"redis://gateway:s3cret@127.0.0.1:{port}/3"))
    try:
        conn = await connections.get()
        await conn.call("SET", "where", "db3")
        assert cli(disposable_redis, "-n", "3", "GET", "where") == "db3"
        assert cli(disposable_redis, "-n", "0", "GET", "where") == ""
    finally:
        connections.close()
    # The same settings in the query string, as redis-py also reads them.
    query = Connections(Endpoint.from_url(f"redis://127.0.0.1:{port}?username=gateway&password=s3cret&db=3"))
    try:
        assert await (await query.get()).call("GET", "where") == b"db3"
    finally:
        query.close()
    wrong = Connections(Endpoint.from_url(f"redis://gateway:wrong@127.0.0.1:{port}/0"))
    with pytest.raises(ReplyError, match="WRONGPASS"):
        await wrong.get()
    wrong.close()


async def test_cluster_admissions_go_to_the_node_owning_each_team(redis_cluster: RedisClusterServers) -> None:
    store = RedisStore(StoreConfig(url=redis_cluster.url, timeout_ms=1000))
    try:
        teams = [f"pipelined-team-{n}" for n in range(12)]  # spread over all three nodes' slots
        for team in teams:
            decisions = [await store.admit(team, Limits(rpm=2), 1) for _ in range(3)]
            assert [d.admitted for d in decisions] == [True, True, False]
    finally:
        await store.close()


async def test_a_call_past_its_deadline_fails_and_its_late_reply_reaches_no_one_else() -> None:
    """One timer serves every call's deadline. A server that answers the first command late:
    that caller gets TimeoutError after timeout_s, and the late reply is not handed to the next."""
    first_seen, first_answered = asyncio.Event(), asyncio.Event()

    async def late_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"first\r\n")
        first_seen.set()
        await asyncio.sleep(0.4)  # past the first call's deadline
        writer.write(b"+reply-to-first\r\n")
        await writer.drain()
        first_answered.set()
        await reader.readuntil(b"second\r\n")
        writer.write(b"+reply-to-second\r\n")
        await writer.drain()
        await reader.read()  # until the client closes

    server = await asyncio.start_server(late_server, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    connections = Connections(Endpoint.from_url(f"redis://127.0.0.1:{port}"), timeout_s=0.2)
    try:
        conn = await connections.get()
        loop = asyncio.get_running_loop()
        started = loop.time()
        first = conn.call("ECHO", "first")
        await first_seen.wait()
        with pytest.raises(TimeoutError):
            await first
        assert 0.15 <= loop.time() - started < 0.4
        await first_answered.wait()
        second = await asyncio.wait_for(conn.call("ECHO", "second"), 2)
        assert second == b"reply-to-second"
        with pytest.raises(TimeoutError):  # nothing answers at all: still bounded
            await conn.call("ECHO", "never answered")
    finally:
        connections.close()
        server.close()
        await server.wait_closed()
