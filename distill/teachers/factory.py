"""The one place a teacher is built: spec + options + price + budget + cache -> a ready
teacher. Generate's teacher, curate's judge, eval's systems and eval's judge all come
from `make_teacher`, so every one is priced the same way and its spend can be counted;
eval's students loaded here come from `make_student`, through the same runtimes as a
`local:` teacher (`RUNTIMES`, chosen by the `engine` option).

Callers read what a teacher can do from its capability flags (`supports_schema`,
`sends_all_at_once`, `needs_json_prefill`, `runs_locally`; the wrappers, a cache or a
provider batch in front, report their inner teacher's) and never from its spec.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from distill.config import PriceConfig
from distill.errors import UserError
from distill.teachers import BACKENDS, parse_spec
from distill.teachers.base import Teacher
from distill.teachers.batch import BatchTeacher
from distill.teachers.cache import CachedTeacher, RequestCache
from distill.teachers.engine import ApiTeacher
from distill.teachers.llamacpp import LlamaCppTeacher
from distill.teachers.local import LocalOptions, LocalTeacher, TransformersTeacher, choose_engine
from distill.teachers.prices import BATCH_DISCOUNT, PRICES_AS_OF, Budget, Price, lookup

# A local model's runtimes, by the engine choose_engine names.
RUNTIMES: dict[str, type[LocalTeacher]] = {
    runtime.engine: runtime for runtime in (LlamaCppTeacher, TransformersTeacher)
}


def price_for(
    spec: str,
    given: PriceConfig | None = None,
    *,
    max_cost_usd: float | None = None,
    batch: bool = False,
) -> tuple[Price | None, str]:
    """The price of `spec`'s tokens and where it came from: the recipe's `given` price,
    else the price table for an API teacher; a model that runs here costs nothing.
    Through a provider's batch API (`batch`) the price carries its discount: the one
    place it is applied, for the teacher (make_teacher) and for `distill estimate`.
    No client or key is needed (the estimate and the preflight use it)."""
    price, source = _list_price(spec, given, max_cost_usd=max_cost_usd, batch=batch)
    if not batch:
        return price, source
    price = replace(price, discount=BATCH_DISCOUNT) if price is not None else None
    return price, source + ", batch API: half price"


def _list_price(
    spec: str, given: PriceConfig | None, *, max_cost_usd: float | None, batch: bool
) -> tuple[Price | None, str]:
    """price_for's price before any batch discount."""
    provider, _, model = spec.partition(":")
    backend = BACKENDS.get(provider)
    is_api = backend is not None and issubclass(backend, ApiTeacher)
    if batch and not is_api:
        raise UserError(
            f"generate.mode batch needs an openai: or anthropic: teacher, not {spec}; "
            "set generate.mode: online"
        )
    if given is not None:
        return Price(given.input, given.output, given.cached_input), "recipe"
    if not is_api:
        return None, "runs on this machine: no API cost"
    price = lookup(provider, model)
    if price is not None:
        return price, f"price table ({PRICES_AS_OF})"
    if max_cost_usd is not None:
        raise UserError(
            f"no price known for {spec} and generate.max_cost_usd is set; give one: "
            "teacher.price: {input: USD_PER_1M, output: USD_PER_1M}"
        )
    return None, "unknown (not in the table; set teacher.price): counted as 0"


def make_teacher(
    spec: str,
    options: dict[str, Any] | None = None,
    *,
    price: PriceConfig | None = None,
    max_cost_usd: float | None = None,
    batch_state: Path | None = None,
    batch_poll_s: float = 30.0,
    batch_resubmits: int = 1,
    cache: RequestCache | None = None,
    salt: str = "",
) -> Teacher:
    """A ready teacher for `spec`: its backend's options validated, priced (`price_for`),
    held to `max_cost_usd`; with `batch_state`, behind the provider's batch API at its
    discount (state kept in that file); with `cache`, answering from it first (`salt`:
    the prompt templates' hashes). `teacher.price_source` says where the price came from."""
    backend, model, opts = parse_spec(spec, options)
    cost, source = price_for(spec, price, max_cost_usd=max_cost_usd, batch=batch_state is not None)
    if backend is LocalTeacher:
        backend = RUNTIMES[choose_engine(model, opts.engine)]
    teacher: Teacher = backend(spec, model, opts)
    if isinstance(teacher, ApiTeacher):
        teacher.price = cost
        teacher.budget = Budget(max_cost_usd)
        if batch_state is not None:
            teacher = BatchTeacher(teacher, batch_state, batch_poll_s, batch_resubmits)
    teacher.price_source = source
    return with_cache(teacher, cache, salt) if cache is not None else teacher


def make_student(
    ref: str, options: LocalOptions, adapter: Path | None, *, timed: int, stop_loops: int
) -> LocalTeacher:
    """Eval's student loaded here: model `ref` with `adapter` (a PEFT adapter folder for
    transformers, a LoRA GGUF for llama.cpp; None: none), through the runtime
    `options.engine` names, as a `local:` teacher's is chosen. Through llama.cpp it is
    measured: `timed` answers of a batch are timed alone and replies that repeat a run of
    `stop_loops` tokens are cut (LlamaCppTeacher). `another(adapter)` gives the student
    of each system."""
    runtime = RUNTIMES[choose_engine(ref, options.engine)]
    spec = f"student:{ref}"
    if runtime is LlamaCppTeacher:
        return LlamaCppTeacher(spec, ref, options, adapter, timed=timed, stop_loops=stop_loops)
    return runtime(spec, ref, options, adapter)


def with_cache(teacher: Teacher, cache: RequestCache, salt: str = "") -> Teacher:
    """`teacher` answering from `cache` first (a built teacher reused under another
    salt: eval's judge on the teacher system's loaded model)."""
    return CachedTeacher(teacher, cache, salt=salt)
