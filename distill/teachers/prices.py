"""What teacher requests cost: a price table per model and a spend cap.

Prices are USD per million tokens (input, output, cached input), as the providers
published them for their standard (not priority or long-context) tiers; their
Batch APIs charge half. Check your provider's page: a recipe's `teacher.price`
overrides the table, and a model the table does not know costs nothing unless
priced there (a self-hosted server), which `distill estimate` says plainly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from distill.errors import DistillError
from distill.teachers.base import Message, Usage

PRICES_AS_OF = "2025-11"
BATCH_DISCOUNT = 0.5


@dataclass(frozen=True)
class Price:
    input: float  # USD per 1M input tokens
    output: float  # USD per 1M output tokens
    cached_input: float | None = None  # USD per 1M cached input tokens (None: as input)
    # The share of the list price paid: BATCH_DISCOUNT through a provider's batch API
    # (set by teachers.factory.price_for, the one place that applies it).
    discount: float = 1.0

    def cost(self, usage: Usage) -> float:
        cached = min(usage.cached_input_tokens, usage.input_tokens)
        cached_rate = self.input if self.cached_input is None else self.cached_input
        usd = (
            (usage.input_tokens - cached) * self.input
            + cached * cached_rate
            + usage.output_tokens * self.output
        ) / 1e6
        return usd * self.discount

    def bound(self, input_tokens: int, output_tokens: int) -> float:
        """The most a request of these sizes can cost (no cache discount assumed)."""
        return (input_tokens * self.input + output_tokens * self.output) / 1e6 * self.discount


# Longest matching prefix wins: "gpt-4o-mini-2024-07-18" is priced as "gpt-4o-mini".
PRICES: dict[str, dict[str, Price]] = {
    "openai": {
        "gpt-5": Price(1.25, 10.00, 0.125),
        "gpt-5-mini": Price(0.25, 2.00, 0.025),
        "gpt-5-nano": Price(0.05, 0.40, 0.005),
        "gpt-4.1": Price(2.00, 8.00, 0.50),
        "gpt-4.1-mini": Price(0.40, 1.60, 0.10),
        "gpt-4.1-nano": Price(0.10, 0.40, 0.025),
        "gpt-4o": Price(2.50, 10.00, 1.25),
        "gpt-4o-mini": Price(0.15, 0.60, 0.075),
        "o3": Price(2.00, 8.00, 0.50),
        "o3-mini": Price(1.10, 4.40, 0.55),
        "o4-mini": Price(1.10, 4.40, 0.275),
        "gpt-3.5-turbo": Price(0.50, 1.50),
    },
    "anthropic": {
        "claude-opus-4-5": Price(5.00, 25.00, 0.50),
        "claude-opus-4-1": Price(15.00, 75.00, 1.50),
        "claude-opus-4": Price(15.00, 75.00, 1.50),
        "claude-sonnet-4-5": Price(3.00, 15.00, 0.30),
        "claude-sonnet-4": Price(3.00, 15.00, 0.30),
        "claude-3-7-sonnet": Price(3.00, 15.00, 0.30),
        "claude-3-5-sonnet": Price(3.00, 15.00, 0.30),
        "claude-haiku-4-5": Price(1.00, 5.00, 0.10),
        "claude-3-5-haiku": Price(0.80, 4.00, 0.08),
        "claude-3-haiku": Price(0.25, 1.25, 0.03),
    },
}


def lookup(provider: str, model: str) -> Price | None:
    """The table's price for `model` (longest prefix match), or None."""
    table = PRICES.get(provider, {})
    matches = [name for name in table if model == name or model.startswith(name + "-")]
    return table[max(matches, key=len)] if matches else None


def estimate_tokens(messages: list[Message]) -> int:
    """Prompt tokens of a chat, estimated: ~4 characters a token plus 4 per message.

    The rule of thumb for English under the GPT and Claude tokenizers; used for rate
    limits, budget reservations and `distill estimate` (no tokenizer download needed).
    """
    return sum(math.ceil(len(m["content"]) / 4) + 4 for m in messages)


class BudgetExceeded(DistillError):
    """Spending the next request could pass max_cost_usd; nothing more was sent.

    `counts` are the stage's figures so far, for the manifest."""

    exit_code = 3

    def __init__(self, message: str, counts: dict | None = None) -> None:
        self.counts = counts or {}
        super().__init__(message)


class Budget:
    """Spend so far plus reservations for requests in flight, against a cap.

    A request reserves its worst case (estimated prompt + max_tokens of output) before
    it is sent, so the cap holds even when every request in flight comes back long.
    """

    def __init__(self, max_usd: float | None) -> None:
        self.max_usd = max_usd
        self.spent = 0.0
        self.reserved = 0.0
        self.refused = 0

    def reserve(self, usd: float) -> bool:
        if self.max_usd is not None and self.spent + self.reserved + usd > self.max_usd:
            self.refused += 1
            return False
        self.reserved += usd
        return True

    def settle(self, reserved: float, actual: float) -> None:
        self.reserved = max(0.0, self.reserved - reserved)
        self.spent += actual
