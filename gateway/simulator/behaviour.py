"""How the simulated upstream behaves: keys, latency, rate limits and the reply text."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_REPLY = "This is a simulated reply."


@dataclass(frozen=True)
class SimulatorConfig:
    """Frozen behaviour of one simulator instance.

    ``rpm`` and ``tpm`` apply per simulated deployment: the Azure deployment id, the Foundry
    ``azureml-model-deployment`` header or body ``model``, or the OpenAI body ``model``.
    """

    api_keys: frozenset[str] = frozenset({"sim-key"})
    latency_per_token_s: float = 0.0
    first_byte_latency_s: float = 0.0
    rpm: int | None = None
    tpm: int | None = None
    reply: str = DEFAULT_REPLY
    # The rolling window rpm/tpm are counted over; only tests should want anything but 60 s.
    rate_window_s: float = 60.0

    def __post_init__(self) -> None:
        if self.latency_per_token_s < 0 or self.first_byte_latency_s < 0:
            raise ValueError("simulator latencies must not be negative")
        for name, limit in (("rpm", self.rpm), ("tpm", self.tpm)):
            if limit is not None and limit < 1:
                raise ValueError(f"simulator {name} must be at least 1")
        if self.rate_window_s <= 0:
            raise ValueError("simulator rate_window_s must be positive")
        if not self.reply.strip():
            raise ValueError("simulator reply must contain at least one word")
