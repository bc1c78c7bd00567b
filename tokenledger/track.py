"""``ledger.track(...)``: one LLM call as a request event (the reservation) and a usage event.

On enter: a request event with the input tokens estimated by tiktoken (3 tokens of overhead
per chat message, as OpenAI documents), ``max_output_tokens`` and the reserved cost from
the price table. On exit: a usage event with the recorded tokens, the latency, success,
and the exception's type and message as the error. A call that failed before usage was
recorded reports the estimated input tokens and no output, flagged ``estimated``.

Used as a decorator (see ``Call``), the wrapped function's return value is read with
``record()``. ``call.retry()`` gives the next attempt: same ``idempotency_key``, ``attempt`` + 1.
The prompt text leaves the process only with ``Ledger(include_prompts=True)``, cut to fit
a message (tokenledger.prompts). Arguments that make an event the contract refuses are
never raised: the event goes out as given, for the worker's DLQ (tokenledger.bad_input).
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, TypeVar

from tokenledger.bad_input import BAD_INPUT
from tokenledger.context_budget import ContextReport
from tokenledger.contract.messages import CacheKind, RequestEvent, UsageEvent
from tokenledger.contract.price_book import CallContext
from tokenledger.contract.pricing import TokenCounts
from tokenledger.ledger import Ledger, new_id
from tokenledger.prompts import Prompt, prompt_field
from tokenledger.tokens import estimate_tokens
from tokenledger.usage import UsageNotFoundError, read_usage

F = TypeVar("F", bound=Callable[..., Any])
_PER_MESSAGE = 3
_REPLY_PRIMING = 3


def estimate_input_tokens(prompt: Prompt | None, model: str) -> int:
    """The prompt's tokens for the reservation: never blocks on loading an encoding, never
    raises (tokenledger.tokens.estimate_tokens)."""
    if prompt is None:
        return 0
    if isinstance(prompt, str):
        return estimate_tokens(prompt, model)
    total = _REPLY_PRIMING
    for message in prompt:
        total += _PER_MESSAGE
        for value in message.values():
            total += _count_content(value, model)
    return total


def _count_content(value: Any, model: str) -> int:
    if isinstance(value, str):
        return estimate_tokens(value, model)
    if isinstance(value, Sequence):  # content parts: [{"type": "text", "text": ...}, ...]
        return sum(
            _count_content(part.get("text", ""), model)
            for part in value
            if isinstance(part, Mapping)
        )
    return 0


def _clean(text: str) -> str:
    """Text that can be sent: a lone surrogate (a file name's, say) becomes ``?``."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode()
    return text


class Call:
    """One LLM call as the ledger sees it: made by ``Ledger.track()``, never directly.

    As a context manager (``with`` or ``async with``), entering emits the request event and
    leaving the usage event; ``record()`` in between gives it the response's usage::

        with ledger.track(tenant_id="acme", feature="answer", model="gpt-4o",
                          provider="openai", prompt=messages, max_output_tokens=800) as call:
            call.record(client.chat.completions.create(model="gpt-4o", messages=messages))

    As a decorator, each invocation of the function is a call of its own, its return value
    recorded::

        @ledger.track(tenant_id="acme", feature="summary", model="gpt-4o", provider="openai")
        def summarize(text: str) -> ChatCompletion: ...

    Not thread-safe: a ``Call`` belongs to the code making the call (a decorated function
    may run on many threads at once, each invocation with its own ``Call``). Never raises
    into the caller: unreadable usage is counted and reported ``estimated``, arguments the
    contract refuses send the event as given, and the caller's own exception goes on,
    recorded as the call's error. Only ``record()`` with neither a response nor counts
    raises (``ValueError``: a programming error).
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        tenant_id: str,
        feature: str,
        model: str,
        provider: str,
        route: str = "",
        prompt_version: str = "",
        user_scope: str = "",
        prompt: Prompt | None = None,
        max_output_tokens: int = 0,
        idempotency_key: str | None = None,
        request_id: str | None = None,
        attempt: int = 1,
        task_id: str | None = None,
        batch: bool = False,
        service_tier: str = "",
        context: ContextReport | None = None,
        context_trimmed_tokens: int = 0,
    ) -> None:
        self.ledger = ledger
        self.dims: dict[str, Any] = {
            "tenant_id": tenant_id,
            "user_scope": user_scope,
            "service": ledger.service,
            "feature": feature,
            "route": route,
            "prompt_version": prompt_version,
            "model": model,
            "provider": provider,
            "environment": ledger.environment,
        }
        self.prompt = prompt
        self.max_output_tokens = max_output_tokens
        self.request_id = request_id or idempotency_key or new_id()
        self.idempotency_key = idempotency_key or self.request_id
        self.attempt = attempt
        self.task_id = task_id
        self.batch = batch
        self.service_tier = service_tier
        self.context = context
        self.context_trimmed_tokens = context_trimmed_tokens
        self.estimated_input_tokens = 0
        self.usage: TokenCounts | None = None
        self.cost_nusd: int | None = None
        self.cache: CacheKind = "none"
        self.error: str | None = None
        self.latency_ms: int | None = None
        self._started = 0.0

    # -- the caller's API ----------------------------------------------------------------

    def record(
        self,
        response: Any = None,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cached_input_tokens: int = 0,
        cache_write_tokens: int = 0,
        reasoning_tokens: int = 0,
        cost_nusd: int | None = None,
        cache_write_1h_tokens: int = 0,
        service_tier: str | None = None,
    ) -> TokenCounts | None:
        """Record the call's usage from ``response`` or from explicit counts. A response
        whose usage cannot be read is not an error of the caller's: nothing is raised, the
        usage event goes out ``estimated`` (the prompt's token estimate), a warning is
        logged once per response type and ``ledger.stats()["unreadable_usage"]`` counts it;
        returns None then."""
        if input_tokens is not None or output_tokens is not None:
            usage = TokenCounts(
                input=input_tokens or 0,
                output=output_tokens or 0,
                cached_input=cached_input_tokens,
                cache_write=cache_write_tokens,
                reasoning=reasoning_tokens,
                cache_write_1h=cache_write_1h_tokens,
            )
        elif response is not None:
            try:
                reading = read_usage(response)
            except (
                UsageNotFoundError,
                TypeError,
                ValueError,
                OverflowError,
                AttributeError,
                KeyError,
            ) as exc:
                self.ledger.unreadable_usage(response, exc)
                return None
            usage = reading.tokens
            self.service_tier = self.service_tier or reading.service_tier
        else:
            raise ValueError("record() needs a response or input_tokens= / output_tokens=")
        self.usage = usage
        self.cost_nusd = cost_nusd
        if service_tier is not None:
            self.service_tier = service_tier
        return usage

    def cache_hit(
        self,
        kind: Literal["exact", "semantic"],
        response: Any = None,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cached_input_tokens: int | None = None,
        cache_write_tokens: int | None = None,
        reasoning_tokens: int | None = None,
        cache_write_1h_tokens: int | None = None,
    ) -> None:
        """The answer came from the application's cache: no model call, savings measured.
        Pass the cached answer, or its token counts (as for ``record()``), so the savings
        can be priced."""
        self.cache = kind
        others = (cached_input_tokens, cache_write_tokens, reasoning_tokens, cache_write_1h_tokens)
        given = (input_tokens, output_tokens, *others)
        if response is None and all(n is None for n in given):
            return
        self.record(
            response,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_input_tokens=cached_input_tokens or 0,
            cache_write_tokens=cache_write_tokens or 0,
            reasoning_tokens=reasoning_tokens or 0,
            cache_write_1h_tokens=cache_write_1h_tokens or 0,
        )

    def fail(self, error: str) -> None:
        """Mark the call failed without raising (e.g. the answer was unusable)."""
        self.error = _clean(str(error)[:2048])

    def retry(self) -> Call:
        """The next attempt of this logical request."""
        return Call(
            self.ledger,
            **self._dim_kwargs(),
            prompt=self.prompt,
            max_output_tokens=self.max_output_tokens,
            idempotency_key=self.idempotency_key,
            request_id=self.request_id,
            attempt=self.attempt + 1,
            task_id=self.task_id,
            batch=self.batch,
            service_tier=self.service_tier,
            context=self.context,
            context_trimmed_tokens=self.context_trimmed_tokens,
        )

    # -- context manager -----------------------------------------------------------------

    def __enter__(self) -> Call:
        now = datetime.now(UTC)
        fields: dict[str, Any] = {
            "event_id": new_id(),
            "request_id": self.request_id,
            "idempotency_key": self.idempotency_key,
            "attempt": self.attempt,
            "ts": now,
            **self.dims,
            "estimated_input_tokens": 0,
            "max_output_tokens": self.max_output_tokens,
            "reserved_cost_nusd": None,
            "task_id": self.task_id,
            "prompt_text": None,
        }
        try:
            model = self.dims["model"]
            self.estimated_input_tokens = estimate_input_tokens(self.prompt, model)
            fields["estimated_input_tokens"] = self.estimated_input_tokens
            if self.ledger.include_prompts:
                fields["prompt_text"] = prompt_field(self.prompt)
            priced = self.ledger.prices.price(
                self.dims["provider"],
                model,
                now,
                TokenCounts(input=self.estimated_input_tokens, output=self.max_output_tokens),
                CallContext(batch=self.batch, service_tier=self.service_tier),
            )
            fields["reserved_cost_nusd"] = priced.cost_nusd if priced else None
            event = RequestEvent(**fields)
        except BAD_INPUT as exc:  # a bad argument: sent as given, never raised
            self.ledger.emit_as_given(RequestEvent, fields, exc)
        else:
            self.ledger.emit(event)
        self._started = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        self.latency_ms = int((time.perf_counter() - self._started) * 1000)
        if exc is not None and self.error is None:
            self.error = _clean(f"{type(exc).__name__}: {exc}"[:2048])
        usage = self.usage
        estimated = usage is None
        if usage is None:
            usage = TokenCounts(input=self.estimated_input_tokens, output=0)
        fields: dict[str, Any] = {
            "event_id": new_id(),
            "request_id": self.request_id,
            "idempotency_key": self.idempotency_key,
            "attempt": self.attempt,
            "ts": datetime.now(UTC),
            **self.dims,
            "input_tokens": usage.input,
            "output_tokens": usage.output,
            "cached_input_tokens": usage.cached_input,
            "cache_write_tokens": usage.cache_write,
            "reasoning_tokens": usage.reasoning,
            "cache_write_1h_tokens": usage.cache_write_1h,
            "service_tier": self.service_tier,
            "cache": self.cache,
            "batch": self.batch,
            "latency_ms": self.latency_ms,
            "success": self.error is None,
            "error": self.error,
            "estimated": estimated,
            "cost_nusd": self.cost_nusd,
            "task_id": self.task_id,
            "token_budget_violations": (),
            "context_trimmed_tokens": self.context_trimmed_tokens,
        }
        try:
            if self.context is not None:
                fields["token_budget_violations"] = self.context.violations
            event = UsageEvent(**fields)
        except BAD_INPUT as error:  # never raised: it would hide the caller's exception
            self.ledger.emit_as_given(UsageEvent, fields, error)
        else:
            self.ledger.emit(event)
        return False

    async def __aenter__(self) -> Call:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        return self.__exit__(exc_type, exc, tb)

    # -- decorator -----------------------------------------------------------------------

    def __call__(self, fn: F) -> F:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with self._fresh() as call:
                    result = await fn(*args, **kwargs)
                    call._record_result(result)
                    return result

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._fresh() as call:
                result = fn(*args, **kwargs)
                call._record_result(result)
                return result

        return wrapper  # type: ignore[return-value]

    def _record_result(self, result: Any) -> None:
        if self.usage is None and not isinstance(result, Awaitable):
            self.record(result)  # unreadable: reported as estimated, never raised

    def _fresh(self) -> Call:
        """A new call with the same dimensions: each decorated invocation is its own call."""
        return Call(
            self.ledger,
            **self._dim_kwargs(),
            prompt=self.prompt,
            max_output_tokens=self.max_output_tokens,
            task_id=self.task_id,
            batch=self.batch,
            service_tier=self.service_tier,
        )

    def _dim_kwargs(self) -> dict[str, Any]:
        return {k: v for k, v in self.dims.items() if k not in ("service", "environment")}
