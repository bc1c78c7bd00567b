"""Model and provider names as people write them -> what the price source knows.

Users pass ``openai/gpt-4o``, ``GPT-4o``, ``anthropic/claude-sonnet-4-5``,
``claude-sonnet-4-5@20250929`` (Vertex), ``us.anthropic.claude-sonnet-4-5-20250929-v1:0``
(Bedrock, with its region), ``models/gemini-2.5-flash`` (the Gemini REST path). The price
source matches case, dated snapshots and Bedrock region prefixes itself (and prices the
regional uplift where it has one); this module strips routing prefixes, maps gateway
provider names (LiteLLM's, OpenTelemetry's) to the source's, and lists the spellings to try.
"""

from __future__ import annotations

PROVIDERS: dict[str, str] = {
    "openai": "openai",
    "azure": "azure",
    "azure_openai": "azure",
    "azure.ai.openai": "azure",
    "anthropic": "anthropic",
    "gemini": "google",
    "google": "google",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "vertex_ai": "google",
    "vertex": "google",
    "vertexai": "google",
    "vertex_ai_beta": "google",
    "bedrock": "aws",
    "aws": "aws",
    "aws.bedrock": "aws",
    "mistral": "mistral",
    "mistral_ai": "mistral",
    "groq": "groq",
    "deepseek": "deepseek",
    "xai": "x-ai",
    "x-ai": "x-ai",
    "x_ai": "x-ai",
    "cohere": "cohere",
    "together": "together",
    "together_ai": "together",
    "fireworks": "fireworks",
    "fireworks_ai": "fireworks",
    "openrouter": "openrouter",
    "perplexity": "perplexity",
}
"""Provider names (lower case) as SDKs, gateways and OpenTelemetry's ``gen_ai.provider.name``
spell them -> the source's provider id. Others are passed through as written."""

_PATH_PREFIXES = ("models/", "publishers/google/models/", "publishers/anthropic/models/")


def source_provider(provider: str | None) -> str | None:
    if not provider:
        return None
    key = provider.strip().lower()
    return PROVIDERS.get(key, key)


def split_name(provider: str | None, model: str) -> tuple[str | None, str]:
    """(provider hint, bare model name): routing prefixes removed, lower case. The event's
    own provider wins over a prefix's."""
    name = model.strip().lower()
    hint = source_provider(provider)
    for prefix in _PATH_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix) :]
    while "/" in name:
        head, rest = name.split("/", 1)
        if head not in PROVIDERS:
            break
        hint = hint or PROVIDERS[head]
        name = rest
        for prefix in _PATH_PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix) :]
    return hint, name


def candidates(provider: str | None, model: str) -> list[tuple[str | None, str]]:
    """(provider, name) pairs to try in order: the name as written at the event's provider,
    then prefixes stripped, then a Vertex ``@version`` written as a dated suffix, then any
    provider whose models match (the price book tries that last one only for a provider
    the source does not know, such as a gateway's own name)."""
    hint, name = split_name(provider, model)
    prefixed = model.strip().lower()
    order: list[tuple[str | None, str]] = [(source_provider(provider), prefixed), (hint, name)]
    if "@" in name:
        base, _, ver = name.partition("@")
        order += [(hint, f"{base}-{ver}"), (hint, base)]
    order += [(None, name)]
    seen: set[tuple[str | None, str]] = set()
    return [c for c in order if not (c in seen or seen.add(c))]  # type: ignore[func-returns-value]
