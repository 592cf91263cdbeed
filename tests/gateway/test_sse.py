"""The stream relay: bytes out as they come, wherever the upstream's reads happen to split them."""

from __future__ import annotations

import pytest

from gateway.sse import StreamRelay
from plugins.dialects.base import StreamPlan

CHUNK = (
    b'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"%s"},'
    b'"finish_reason":null}],"usage":null}\n\n'
)
USAGE = b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}\n\n'
DONE = b"data: [DONE]\n\n"
STREAM = CHUNK % b"Hel" + CHUNK % b'lo \\"you\\"' + CHUNK % b"!" + USAGE + DONE

WITHHOLD = StreamPlan(withhold_usage_chunk=True, usage_expected=True)
PASS = StreamPlan(usage_expected=True)
ESTIMATE = StreamPlan()
STRICT = StreamPlan(strict_framing=True)


def relay(plan: StreamPlan, parts: list[bytes]) -> tuple[bytes, StreamRelay]:
    r = StreamRelay(plan, prompt_estimate=5)
    out = b"".join(r.feed(part) for part in parts) + r.finish()
    return out, r


@pytest.mark.parametrize("cut", range(1, len(STREAM)))
def test_every_split_point_gives_the_same_answer(cut: int) -> None:
    parts = [STREAM[:cut], STREAM[cut:]]
    out, r = relay(PASS, parts)
    assert out == STREAM  # the client asked for usage: its bytes are the upstream's
    assert (r.usage().prompt_tokens, r.usage().completion_tokens, r.usage().estimated) == (7, 3, False)
    withheld, r = relay(WITHHOLD, parts)
    assert withheld == STREAM.replace(USAGE, b"")  # exactly that one chunk is withheld
    assert r.done and r.reported is not None


def test_passthrough_returns_each_read_at_once() -> None:
    r = StreamRelay(PASS, 0)
    assert r.feed(STREAM[:10]) == STREAM[:10]  # not held back for the event to complete


def test_estimate_counts_streamed_text_when_no_usage_comes() -> None:
    out, r = relay(ESTIMATE, [CHUNK % (b"x" * 40), CHUNK % (b"y" * 8), DONE])
    usage = r.usage()
    assert usage.estimated and usage.prompt_tokens == 5
    assert usage.completion_tokens == 12  # 48 characters at four a token
    assert out.endswith(DONE)


def test_strict_framing_drops_comments_events_and_crlf() -> None:
    noisy = b": keep-alive\r\n\r\n" + (CHUNK % b"Hi").replace(b"\n", b"\r\n") + b"event: ping\ndata: {}\n\n" + DONE
    out, _ = relay(STRICT, [noisy[:7], noisy[7:]])
    assert out == CHUNK % b"Hi" + b"data: {}\n\n" + DONE


def test_a_usage_chunk_is_synthesized_for_a_client_that_asked() -> None:
    out, _ = relay(StreamPlan(synthesize_usage_chunk=True), [CHUNK % b"abcd", DONE])
    events = out.split(b"\n\n")
    assert b'"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}' in events[1]
    assert events[2] == b"data: [DONE]"


def test_an_unterminated_last_usage_chunk_is_still_withheld() -> None:
    out, r = relay(WITHHOLD, [CHUNK % b"a", USAGE.rstrip(b"\n")])
    assert out == CHUNK % b"a"
    assert r.reported is not None and r.reported.completion_tokens == 3


def test_a_usage_chunk_whose_counts_are_not_numbers_leaves_the_estimate_standing() -> None:
    broken = USAGE.replace(b'"prompt_tokens":7', b'"prompt_tokens":{"text":7}')
    out, r = relay(PASS, [CHUNK % (b"x" * 40), broken, DONE])
    assert out == CHUNK % (b"x" * 40) + broken + DONE  # relayed unchanged all the same
    assert r.reported is None and r.usage().estimated
