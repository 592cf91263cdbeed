"""The three upstream dialects the simulator speaks and the operations it serves."""

from __future__ import annotations

import enum


class Dialect(enum.Enum):
    OPENAI = "openai"
    AZURE = "azure"
    FOUNDRY = "foundry"


class Operation(enum.Enum):
    CHAT = "chat/completions"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"

    @property
    def azure_operation_id(self) -> str:
        """The operation name Azure quotes in its 429 messages."""
        return _AZURE_OPERATION_IDS[self]


_AZURE_OPERATION_IDS = {
    Operation.CHAT: "ChatCompletions_Create",
    Operation.COMPLETIONS: "Completions_Create",
    Operation.EMBEDDINGS: "Embeddings_Create",
}
