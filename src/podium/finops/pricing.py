"""What a call costs: a model's catalog price applied to its :class:`~podium.models.base.Usage`.

Every amount is an exact :class:`~decimal.Decimal` (USD): a token count times a per-token price is
exact, and nothing here rounds. The rules, and why:

- **Each token once.** ``Usage`` already takes cache reads and writes out of ``input_tokens`` and
  reasoning out of ``output_tokens``, so each part is priced once at its own rate.
- **Long-context tiers apply to the whole request.** The request's prompt is
  ``input + cache_read + cache_write`` tokens; the tier with the highest ``above_input_tokens``
  that the prompt *exceeds* prices every token of that request (input, cache and output), as
  Google, Anthropic (1M context) and Bedrock bill.
- **No invented discounts.** A missing ``cache_read`` or ``cache_write`` price means the provider
  gives no cache discount (OpenAI's and Gemini's implicit caching write at the normal input
  price; a model without prompt caching bills every prompt token as input): such tokens are
  billed at the input price in force (the tier's, when a tier applies). Reasoning without a
  ``reasoning`` price is billed as output (every provider in the catalog does); inside a tier it
  is billed at the tier's output price, since tiers carry no separate reasoning price.
- **Task units.** ``characters``, ``images``, ``seconds`` and ``requests`` are billed at
  ``per_character``, ``per_image``, ``per_second`` and ``per_request``; ``None`` there means the
  model has no such charge (the catalog's convention). ``seconds`` is a float in ``Usage`` and is
  taken at its shortest decimal repr (``12.5`` → ``Decimal('12.5')``).
- **Unknown price → refuse.** A model with no price in force on the day raises
  :class:`UnknownPrice`; the gateway refuses the call unless the operator allows unpriced calls.

:func:`worst_case` is the upper bound a budget reserves before a call: prompt tokens at the
highest per-prompt-token rate of the applicable tier (input, or cache write when writing the cache
costs more, as with Anthropic) plus the maximum output at ``max(output, reasoning)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from podium.errors import PodiumError
from podium.models.base import Usage
from podium.models.catalog import ModelInfo, Price

ZERO = Decimal(0)


class UnknownPrice(PodiumError):
    """No price for the model is in force on the day of the call.

    Attributes:
        model: The model's catalog name.
        when: The day the call was priced for.
    """

    def __init__(self, model: str, when: date, first: date | None = None) -> None:
        self.model = model
        self.when = when
        why = (
            f"its first price takes effect on {first.isoformat()}"
            if first is not None
            else "the catalog has no price for it"
        )
        super().__init__(
            f"no price for model {model!r} on {when.isoformat()} ({why}); add a price to the "
            "catalog, or allow unpriced calls in the gateway's configuration"
        )


@dataclass(frozen=True, slots=True)
class Cost:
    """The price of one call, by part (USD). ``total`` is their exact sum.

    Attributes:
        input: Prompt tokens neither read from nor written to the cache.
        output: Visible output tokens.
        cache_read: Prompt tokens read from the provider's cache.
        cache_write: Prompt tokens written to the provider's cache.
        reasoning: Reasoning (thinking) tokens.
        units: Task units: characters, images, seconds and requests.
        tier: ``above_input_tokens`` of the long-context tier that priced the call, if any.
        total: The sum of the parts.
    """

    input: Decimal = ZERO
    output: Decimal = ZERO
    cache_read: Decimal = ZERO
    cache_write: Decimal = ZERO
    reasoning: Decimal = ZERO
    units: Decimal = ZERO
    tier: int | None = None
    total: Decimal = field(init=False)

    def __post_init__(self) -> None:
        total = (
            self.input + self.output + self.cache_read + self.cache_write + self.reasoning
        ) + self.units
        object.__setattr__(self, "total", total)


@dataclass(frozen=True, slots=True)
class _Rates:
    """Per-token rates in force for one request (after tier selection and defaults)."""

    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal
    reasoning: Decimal
    tier: int | None


def _price_on(info: ModelInfo, when: date) -> Price:
    found = info.price_at(when)
    if found is None:
        first = info.prices[0].effective_from if info.prices else None
        raise UnknownPrice(info.name, when, first)
    return found


def _rates(price: Price, prompt_tokens: int) -> _Rates:
    """The rates for a request whose prompt has ``prompt_tokens`` tokens."""
    tier = None
    for candidate in price.tiers:  # sorted by threshold, lowest first
        if prompt_tokens > candidate.above_input_tokens:
            tier = candidate
    if tier is None:
        return _Rates(
            input=price.input,
            output=price.output,
            cache_read=price.input if price.cache_read is None else price.cache_read,
            cache_write=price.input if price.cache_write is None else price.cache_write,
            reasoning=price.output if price.reasoning is None else price.reasoning,
            tier=None,
        )
    return _Rates(
        input=tier.input,
        output=tier.output,
        cache_read=tier.input if tier.cache_read is None else tier.cache_read,
        cache_write=tier.input if tier.cache_write is None else tier.cache_write,
        reasoning=tier.output,
        tier=tier.above_input_tokens,
    )


def _units(price: Price, usage: Usage) -> Decimal:
    """Task-unit charges; a ``None`` price is no such charge."""
    total = ZERO
    if price.per_character is not None:
        total += usage.characters * price.per_character
    if price.per_image is not None:
        total += usage.images * price.per_image
    if price.per_second is not None:
        total += Decimal(repr(usage.seconds)) * price.per_second
    if price.per_request is not None:
        total += usage.requests * price.per_request
    return total


def price(info: ModelInfo, usage: Usage, when: date) -> Cost:
    """The exact cost of one call.

    Args:
        info: The catalog entry of the model that served the call.
        usage: What the call consumed (each token counted once).
        when: The day of the call (UTC): picks the price in force.

    Returns:
        The cost, by part.

    Raises:
        UnknownPrice: No price for the model is in force on ``when``.
    """
    found = _price_on(info, when)
    prompt = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
    rates = _rates(found, prompt)
    return Cost(
        input=usage.input_tokens * rates.input,
        output=usage.output_tokens * rates.output,
        cache_read=usage.cache_read_tokens * rates.cache_read,
        cache_write=usage.cache_write_tokens * rates.cache_write,
        reasoning=usage.reasoning_tokens * rates.reasoning,
        units=_units(found, usage),
        tier=rates.tier,
    )


def worst_case(
    info: ModelInfo,
    prompt_tokens: int,
    max_output_tokens: int,
    when: date,
    *,
    units: Usage | None = None,
) -> Decimal:
    """The most a call can cost: what a budget reserves before it.

    Args:
        info: The catalog entry of the model about to be called.
        prompt_tokens: The prompt's size in tokens (all of it, cached or not).
        max_output_tokens: The most the model may produce, reasoning included.
        when: The day of the call (UTC).
        units: Task units the call will consume (characters, images, seconds); ``requests``
            defaults to one call.

    Returns:
        ``prompt_tokens`` at the highest per-prompt-token rate of the applicable tier (input or
        cache write) plus ``max_output_tokens`` at ``max(output, reasoning)``, plus task units.

    Raises:
        UnknownPrice: No price for the model is in force on ``when``.
    """
    if prompt_tokens < 0 or max_output_tokens < 0:
        raise ValueError("token counts cannot be negative")
    found = _price_on(info, when)
    rates = _rates(found, prompt_tokens)
    prompt_rate = max(rates.input, rates.cache_write, rates.cache_read)
    output_rate = max(rates.output, rates.reasoning)
    return (
        prompt_tokens * prompt_rate
        + max_output_tokens * output_rate
        + _units(found, units or Usage())
    )
