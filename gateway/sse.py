"""Reading usage from an SSE stream while its bytes pass through.

``StreamRelay.feed`` takes each chunk as it arrives from the upstream and returns the bytes to
send to the client at once. When nothing has to be withheld or re-framed it returns the chunk
itself, unchanged, and only scans it on the side. Otherwise it works per event, releasing each
event as soon as its terminating blank line has arrived.

Events are parsed once (orjson) to read ``usage`` and to count streamed content, so that a
stream cut short, or one whose upstream reports no usage, is still counted.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from gateway.exchange import Usage
from plugins.dialects.base import StreamPlan

_DONE = b"[DONE]"
_EVENT_END = b"\n\n"


class StreamRelay:
    __slots__ = (
        "_chars",
        "_content_chunks",
        "_pending",
        "_plan",
        "_prompt_estimate",
        "done",
        "reported",
    )

    def __init__(self, plan: StreamPlan, prompt_estimate: int) -> None:
        self._plan = plan
        self._prompt_estimate = prompt_estimate
        self._pending = b""
        self._chars = 0
        self._content_chunks = 0
        #: The usage the upstream reported, if it did.
        self.reported: Usage | None = None
        #: ``data: [DONE]`` was seen.
        self.done = False

    def feed(self, chunk: bytes) -> bytes:
        """Scan ``chunk``; return what the client should receive now."""
        data = self._pending + chunk if self._pending else chunk
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        end = data.rfind(_EVENT_END)
        if end < 0:
            self._pending = data
            return b"" if self._plan.per_event else chunk
        complete, self._pending = data[: end + 2], data[end + 2 :]
        if not self._plan.per_event:
            for event in complete.split(_EVENT_END):
                if event:
                    self._scan(event)
            return chunk
        out: list[bytes] = []
        for event in complete.split(_EVENT_END):
            if event:
                keep = self._scan(event)
                if keep is not None:
                    out.append(keep)
        return b"".join(out)

    def finish(self) -> bytes:
        """The bytes still owed when the upstream ends (a partial last event, if any)."""
        if not self._pending:
            return b""
        pending, self._pending = self._pending, b""
        if not self._plan.per_event:
            return b""  # already forwarded as it arrived
        keep = self._scan(pending.rstrip(b"\n"))
        return keep or b""

    def usage(self) -> Usage:
        """Reported usage when the upstream sent it; otherwise an estimate from what streamed."""
        if self.reported is not None:
            return self.reported
        completion = max(self._content_chunks, math.ceil(self._chars / 4))
        return Usage(self._prompt_estimate, completion, estimated=True)

    # -- one event ------------------------------------------------------------------------------

    def _scan(self, event: bytes) -> bytes | None:
        """Read one event; return its bytes for the client (re-framed if strict) or ``None`` to withhold."""
        payload = _data_of(event)
        if payload is None:
            return None if self._plan.strict_framing else event + _EVENT_END
        if payload == _DONE:
            self.done = True
            prefix = b""
            if self._plan.synthesize_usage_chunk and self.reported is None:
                prefix = b"data: " + orjson.dumps(_usage_chunk(self.usage())) + _EVENT_END
            return prefix + b"data: [DONE]" + _EVENT_END
        try:
            message = orjson.loads(payload)
        except orjson.JSONDecodeError:
            message = None
        withhold = False
        if isinstance(message, dict):
            withhold = self._read(message)
        if withhold:
            return None
        if self._plan.strict_framing:
            return b"data: " + payload + _EVENT_END
        return event + _EVENT_END

    def _read(self, message: dict[str, Any]) -> bool:
        """Take usage and content counts from one chunk; True if it is the usage chunk to withhold."""
        choices = message.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                if not isinstance(choice, dict):
                    continue
                delta = choice.get("delta")
                text = choice.get("text") if delta is None else None
                if isinstance(delta, dict):
                    text = delta.get("content")
                    for call in delta.get("tool_calls") or ():
                        if isinstance(call, dict) and isinstance(call.get("function"), dict):
                            args = call["function"].get("arguments")
                            if isinstance(args, str):
                                self._chars += len(args)
                if isinstance(text, str) and text:
                    self._chars += len(text)
                    self._content_chunks += 1
        usage = message.get("usage")
        if isinstance(usage, dict):
            self.reported = Usage(
                int(usage.get("prompt_tokens") or 0),
                int(usage.get("completion_tokens") or 0),
            )
            return self._plan.withhold_usage_chunk and not choices
        return False


def _data_of(event: bytes) -> bytes | None:
    """The ``data:`` payload of one event (multi-line data joined), or ``None`` for comments/others."""
    if event.startswith(b"data: ") and b"\n" not in event:
        return event[6:]
    parts = [line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(parts) if parts else None


def _usage_chunk(usage: Usage) -> dict[str, Any]:
    return {
        "id": "",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "",
        "choices": [],
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total,
        },
    }
