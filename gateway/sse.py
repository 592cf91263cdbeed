"""Reading usage from an SSE stream while its bytes pass through.

``StreamRelay.feed`` takes each chunk as it arrives from the upstream and returns the bytes to
send to the client at once. When nothing has to be withheld or re-framed it returns the chunk
itself, unchanged, and only scans it on the side. Otherwise it works per event, releasing each
event as soon as its terminating blank line has arrived.

Streamed text is counted straight off the bytes, and only the event that carries ``usage`` is
parsed (orjson), so a stream cut short, or one whose upstream reports no usage, is still counted
at about the cost of forwarding it.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from gateway.exchange import Usage
from gateway.json_usage import reported
from plugins.dialects.base import StreamPlan

_DONE = b"[DONE]"
_DONE_EVENTS = (b"data: [DONE]", b"data:[DONE]")
#: ``[DONE]`` as the last event of a block, where a conforming upstream puts it.
_DONE_LAST = tuple(done + b"\n\n" for done in _DONE_EVENTS)
#: A usage object (not ``"usage":null``): the one chunk worth a JSON parse. Compact JSON and
#: json.dumps's default spacing are the two forms upstreams write.
_USAGE_OBJECTS = (b'"usage":{', b'"usage": {')
#: Streamed text: message content, legacy completion text, tool-call arguments.
_TEXT_KEYS = tuple(f'"{name}":{space}"'.encode() for name in ("content", "text", "arguments") for space in ("", " "))
_BACKSLASH = 0x5C
_EVENT_END = b"\n\n"


class StreamRelay:
    __slots__ = (
        "_chars",
        "_content_chunks",
        "_pending",
        "_per_event",
        "_plan",
        "_prompt_estimate",
        "done",
        "reported",
    )

    def __init__(self, plan: StreamPlan, prompt_estimate: int) -> None:
        self._plan = plan
        self._per_event = plan.per_event  # read for every chunk
        self._prompt_estimate = prompt_estimate
        self._pending = b""
        self._chars = 0
        self._content_chunks = 0
        #: The usage the upstream reported, if it did.
        self.reported: Usage | None = None
        #: ``data: [DONE]`` was seen ending a read; anywhere in it, when a usage chunk must be
        #: synthesized before it (the one case that acts on it).
        self.done = False

    def feed(self, chunk: bytes) -> bytes:
        """Scan ``chunk``; return what the client should receive now."""
        data = self._pending + chunk if self._pending else chunk
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        if data.endswith(_EVENT_END):  # the usual case: a chunk of whole events
            complete, self._pending = data, b""
        else:
            end = data.rfind(_EVENT_END)
            if end < 0:
                self._pending = data
                return b"" if self._per_event else chunk
            complete, self._pending = data[: end + 2], data[end + 2 :]
        withheld = self._take(complete)
        if not self._per_event:
            return chunk
        if withheld is None and not self._plan.strict_framing and not (self.done and self._plan.synthesize_usage_chunk):
            return complete  # nothing in this block to change
        return self._reframe(complete, withheld)

    def finish(self) -> bytes:
        """The bytes still owed when the upstream ends (a partial last event, if any)."""
        if not self._pending:
            return b""
        # A last event the upstream never terminated: complete it, so it is handled like the rest.
        pending, self._pending = self._pending.rstrip(b"\n") + _EVENT_END, b""
        withheld = self._take(pending)
        if not self._per_event:
            return b""  # already forwarded as it arrived
        return self._reframe(pending, withheld)

    def usage(self) -> Usage:
        """Reported usage when the upstream sent it; otherwise an estimate from what streamed."""
        if self.reported is not None:
            return self.reported
        completion = max(self._content_chunks, math.ceil(self._chars / 4))
        return Usage(self._prompt_estimate, completion, estimated=True)

    # -- a block of whole events ----------------------------------------------------------------

    def _take(self, block: bytes) -> tuple[int, int] | None:
        """Read the block's usage and count its content; return where the usage-only event to
        withhold lies (``block[start:end]``, its blank line after ``end``).

        The block is scanned as a whole with ``bytes.find``; only an event that carries a usage
        object is parsed, so a stream costs about one JSON parse, not one per chunk.
        """
        if block.endswith(_DONE_LAST) or (
            self._plan.synthesize_usage_chunk and any(done in block for done in _DONE_EVENTS)
        ):
            self.done = True
        withheld = None
        for marker in _USAGE_OBJECTS:
            # From the end: an upstream reports usage once, in its last chunk or two, so the
            # search over a block of many events stops near its end. The last usage is the one.
            at = block.rfind(marker)
            if at < 0:
                continue
            # The event around the marker, found without splitting the whole block.
            start = block.rfind(_EVENT_END, 0, at)
            start = start + 2 if start >= 0 else 0
            end = block.find(_EVENT_END, at)
            end = len(block) if end < 0 else end
            if self._read_usage(block[start:end]):
                withheld = (start, end)
            break  # an upstream writes its JSON one way: no need to look for the other spacing
        if self.reported is None:  # once the upstream has reported usage, no estimate is needed
            if self._plan.usage_expected:
                # The exact figure will come; for a stream cut short before it, one token a chunk
                # (what OpenAI and Azure stream) is estimate enough, and costs one C call.
                self._content_chunks += block.count(b"data:")
            else:
                self._count_text(block)
        return withheld

    def _read_usage(self, event: bytes) -> bool:
        """Take the usage of one event; True if it is the usage-only chunk to withhold."""
        payload = _data_of(event)
        if payload is None:
            return False
        try:
            message = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return False
        usage = reported(message.get("usage") if isinstance(message, dict) else None, 0)
        if usage.estimated:  # none, or not counts: the content estimate stands
            return False
        self.reported = usage
        return self._plan.withhold_usage_chunk and not message.get("choices")

    def _count_text(self, block: bytes) -> None:
        """Add the block's streamed text to the estimate, found with ``bytes.find`` (C speed)."""
        for key in _TEXT_KEYS:
            start = block.find(key)
            while start >= 0:
                begin = start + len(key)
                end = block.find(b'"', begin)
                while end > 0 and block[end - 1] == _BACKSLASH:  # an escaped quote inside the text
                    end = block.find(b'"', end + 1)
                if end < 0:
                    break
                if end > begin:
                    self._chars += end - begin
                    self._content_chunks += 1
                start = block.find(key, end)

    def _reframe(self, block: bytes, withheld: tuple[int, int] | None) -> bytes:
        """The block's events for the client: minus the withheld one, strictly framed if asked,
        with a synthesized usage chunk before ``[DONE]`` if the client wants one we never got."""
        strict = self._plan.strict_framing
        if withheld is not None and not strict and not self._plan.synthesize_usage_chunk:
            start, end = withheld  # the usual case: cut the event and its blank line out
            return block[:start] + block[end + 2 :]
        skipped = block[withheld[0] : withheld[1]] if withheld is not None else None
        out: list[bytes] = []
        for event in block.split(_EVENT_END):
            if not event or event == skipped:
                continue
            payload = _data_of(event)
            if payload is None:
                if not strict:  # comments and the like: harmless to every client but Foundry's
                    out.append(event + _EVENT_END)
                continue
            if payload == _DONE:
                if self._plan.synthesize_usage_chunk and self.reported is None:
                    out.append(b"data: " + orjson.dumps(_usage_chunk(self.usage())) + _EVENT_END)
                out.append(b"data: [DONE]" + _EVENT_END)
                continue
            out.append(b"data: " + payload + _EVENT_END if strict else event + _EVENT_END)
        return b"".join(out)


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
