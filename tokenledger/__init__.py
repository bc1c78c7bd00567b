"""tokenledger: the SDK services import to report LLM calls and gateways use to guard them."""

from tokenledger.tokens import count_tokens

__version__ = "0.1.0"

__all__ = ["__version__", "count_tokens"]
