"""Which body parameters each dialect defines, and the version-dependent rewrites between them.

Facts from the services' specs (see ``shared/reference/dialects.md``): Foundry's defined
parameters, Azure's api-version history, and the fields only one side knows.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import BadRequest

FOUNDRY_DEFINED: dict[str, frozenset[str]] = {
    "chat/completions": frozenset(
        {
            "messages",
            "model",
            "frequency_penalty",
            "presence_penalty",
            "temperature",
            "top_p",
            "max_tokens",
            "response_format",
            "stop",
            "stream",
            "tools",
            "tool_choice",
            "seed",
            "modalities",
        }
    ),
    "embeddings": frozenset({"input", "model", "dimensions", "encoding_format", "input_type"}),
}

#: Azure On-Your-Data and other Azure-only fields: meaningless to any other service.
AZURE_ONLY = ("data_sources", "dataSources", "enhancements", "user_security_context")

#: The api-version (date part) from which classic Azure deployments accept each OpenAI field.
AZURE_FIELD_SINCE: dict[str, str] = {
    "max_completion_tokens": "2024-09-01",
    "stream_options": "2024-09-01",
    "parallel_tool_calls": "2024-09-01",
    "store": "2024-12-01",
    "metadata": "2024-12-01",
    "reasoning_effort": "2024-12-01",
    "prediction": "2025-01-01",
    "audio": "2025-01-01",
    "modalities": "2025-01-01",
}

#: OpenAI fields the classic deployments API never defined.
AZURE_NEVER = (
    "service_tier",
    "web_search_options",
    "verbosity",
    "prompt_cache_key",
    "prompt_cache_options",
    "prompt_cache_retention",
    "safety_identifier",
    "moderation",
)

STREAM_USAGE_SINCE = "2024-09-01"


def version_date(api_version: str | None) -> str:
    """``2024-09-01-preview`` -> ``2024-09-01``; dates compare as strings."""
    return (api_version or "")[:10]


def reject_azure_only(body: dict[str, Any], target: str) -> None:
    for name in AZURE_ONLY:
        if name in body:
            raise BadRequest(
                f"'{name}' is an Azure OpenAI field, and this model is served by a {target} deployment "
                "that does not support it. Remove it, or ask for a model served by Azure OpenAI.",
                param=name,
            )


def rewrite_for_azure(body: dict[str, Any], api_version: str | None) -> None:
    """Make an OpenAI-style body acceptable to a classic Azure deployment at ``api_version``."""
    date = version_date(api_version)
    if "max_completion_tokens" in body and date < AZURE_FIELD_SINCE["max_completion_tokens"]:
        value = body.pop("max_completion_tokens")
        body.setdefault("max_tokens", value)
    for name, since in AZURE_FIELD_SINCE.items():
        if name in body and date < since:
            del body[name]
    # Reported unsupported at 2024-10-21 although the spec lists it; the default needs no saying.
    if body.get("parallel_tool_calls") is True:
        del body["parallel_tool_calls"]
    for name in AZURE_NEVER:
        body.pop(name, None)


def extra_parameters(op: str, body: dict[str, Any]) -> list[str]:
    """The body keys Foundry does not define for ``op``, in request order."""
    defined = FOUNDRY_DEFINED.get(op)
    if defined is None:
        return []
    return [key for key in body if key not in defined]


def foundry_extra_detail(names: list[str]) -> str:
    return (
        f"Extra parameters {names!r} are not allowed when extra-parameters is not set or set to be "
        "'error'. Set extra-parameters to 'pass-through' to pass to the model."
    )
