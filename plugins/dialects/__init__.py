"""The three API dialects the gateway speaks, inbound and outbound."""

from plugins.dialects.azure import AzureDialect
from plugins.dialects.base import Dialect, OutboundRequest, StreamPlan
from plugins.dialects.foundry import FoundryDialect
from plugins.dialects.openai import OpenAIDialect

OPENAI = OpenAIDialect()
AZURE = AzureDialect()
AZURE_V1 = AzureDialect(v1=True)
FOUNDRY = FoundryDialect()

#: The dialect that renders requests for each ``deployments[].dialect``.
OUTBOUND: dict[str, Dialect] = {"openai": OPENAI, "azure": AZURE, "foundry": FOUNDRY}

__all__ = [
    "AZURE",
    "AZURE_V1",
    "FOUNDRY",
    "OPENAI",
    "OUTBOUND",
    "AzureDialect",
    "Dialect",
    "FoundryDialect",
    "OpenAIDialect",
    "OutboundRequest",
    "StreamPlan",
]
