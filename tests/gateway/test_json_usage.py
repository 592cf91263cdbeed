"""Usage read from the end of a JSON answer equals what parsing the whole answer gives."""

from __future__ import annotations

import json
import random
from typing import Any

import orjson
import pytest

from gateway import json_usage as json_usage_module
from gateway.exchange import Usage
from gateway.json_usage import json_usage, reported


@pytest.fixture(params=[0, json_usage_module.WHOLE_PARSE_BELOW], ids=["searched", "as shipped"])
def search_from(request: pytest.FixtureRequest) -> int:
    """The answer size from which usage is searched from the end; 0: always."""
    return int(request.param)

USAGE = {
    "prompt_tokens": 19,
    "completion_tokens": 10,
    "total_tokens": 29,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "accepted_prediction_tokens": 0},
}


def reference(raw: bytes, prompt_estimate: int) -> Usage | None:
    """What the whole answer, parsed, says."""
    if b'"usage"' not in raw:
        return Usage(prompt_estimate, 0, estimated=True)
    try:
        usage = orjson.loads(raw).get("usage")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return reported(usage, prompt_estimate)


CHAT = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": 'a "usage": {} } here'}}],
    "usage": USAGE,
    "system_fingerprint": "fp_1",
}
AZURE = {
    **{k: v for k, v in CHAT.items() if k != "usage"},
    "usage": USAGE,
    "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {"hate": {"filtered": False}}}],
}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (orjson.dumps(CHAT), Usage(19, 10)),
        (orjson.dumps(AZURE), Usage(19, 10)),
        (json.dumps(CHAT, indent=2).encode(), Usage(19, 10)),  # pretty-printed: spacing around ':'
        (orjson.dumps({"usage": USAGE, "data": [{"usage": {"prompt_tokens": 1}}]}), Usage(19, 10)),
        (orjson.dumps({"data": [{"usage": {"prompt_tokens": 1}}]}), Usage(7, 0, estimated=True)),
        (orjson.dumps({"object": "usage", "n": 1}), Usage(7, 0, estimated=True)),
        (orjson.dumps({"usage": None}), Usage(7, 0, estimated=True)),
        (orjson.dumps({"choices": []}), Usage(7, 0, estimated=True)),
        (b'{"usage": {"prompt_tokens": 3, "completion_tokens": 4}', None),  # cut short
        (b"<html>usage</html>", Usage(7, 0, estimated=True)),
        (b'<html>"usage"</html>', None),
        (b'[{"usage": {"prompt_tokens": 3}}]', None),
        (orjson.dumps({"usage": {"prompt_tokens": "3", "completion_tokens": 1}}), Usage(7, 0, estimated=True)),
        (orjson.dumps({"usage": {"prompt_tokens": -3}}), Usage(7, 0, estimated=True)),
        (orjson.dumps({"usage": {"prompt_tokens": True}}), Usage(7, 0, estimated=True)),
    ],
    ids=[
        "openai",
        "azure filter results after usage",
        "pretty",
        "top-level usage first, a nested one last",
        "only nested",
        "a string value",
        "null",
        "none",
        "truncated",
        "not json",
        "not json, quoted key",
        "an array",
        "a count as a string",
        "a negative count",
        "a boolean count",
    ],
)
def test_known_shapes(raw: bytes, expected: Usage | None, search_from: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(json_usage_module, "WHOLE_PARSE_BELOW", search_from)
    assert json_usage(raw, 7) == expected
    assert reference(raw, 7) == expected


def random_value(rng: random.Random, depth: int) -> Any:
    kind = rng.randrange(6 if depth < 4 else 3)
    if kind == 0:
        return rng.randrange(1000)
    if kind == 1:
        return rng.choice(["usage", '"usage": {', "}", "x"])
    if kind == 2:
        return None
    if kind == 3:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(3))]
    if kind == 4:
        return {"prompt_tokens": rng.randrange(100), "completion_tokens": rng.randrange(100)}
    keys = ["usage", "data", "x", "prompt_tokens"]
    return {rng.choice(keys): random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def test_random_documents_agree_with_a_whole_parse(search_from: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(json_usage_module, "WHOLE_PARSE_BELOW", search_from)
    rng = random.Random(20261130)
    for _ in range(3000):
        doc = random_value(rng, 0)
        if not isinstance(doc, dict):
            doc = {"data": doc}
        if rng.random() < 0.5:
            doc["usage"] = random_value(rng, 1)
        raw = json.dumps(doc, indent=rng.choice([None, 1])).encode()
        assert json_usage(raw, 5) == reference(raw, 5), raw
