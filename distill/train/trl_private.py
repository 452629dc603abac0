"""What distill/train/ uses of TRL that TRL does not promise to keep, in one place: its
experimental trainers (GKD, GOLD), the private loss helpers of its server-distillation
trainer (the served GKD teacher's loss), and DPOTrainer's private dataset hook.

The private names were read from the TRL versions in `READ_FROM` (the `gpu` extra pins
1.15.0; the CPU install picks 1.16.0). Each is looked up when first used and checked to
take the parameters it took there; a TRL without it fails with one line naming the
installed version and the ones that have it, instead of an AttributeError mid-training.
`tests/train/test_trl_private.py` fails when the installed TRL is not one of `READ_FROM`, so
an upgrade is read before it is trusted.
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from functools import cache
from importlib import metadata
from typing import Any

from distill.errors import UserError

READ_FROM = ("1.15.0", "1.16.0")
SERVER_DISTILLATION = "experimental.server_distillation.server_distillation_trainer"


def trl_experimental(name: str) -> Any:
    """trl.experimental.<name> (gkd, gold), imported without its 'APIs here are
    unstable' warning: the pin in pyproject.toml is what keeps the API this package was
    written against."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return importlib.import_module(f"trl.experimental.{name}")
        except ImportError:
            raise _missing(f"trl.experimental.{name}") from None


def _missing(what: str) -> UserError:
    return UserError(
        f"trl {metadata.version('trl')} has no {what}, which distill's training calls "
        f"(read from trl {' and '.join(READ_FROM)}): pip install trl=={READ_FROM[-1]}"
    )


def _checked(found: Any, what: str, params: tuple[str, ...]) -> Any:
    """`found`, if it is a function taking `params` (after self); else the error."""
    if not callable(found):
        raise _missing(what)
    names = tuple(p for p in inspect.signature(found).parameters if p != "self")
    if names != params:
        raise _missing(what)
    return found


@cache
def _private(module: str, name: str, params: tuple[str, ...]) -> Any:
    what = f"{name}({', '.join(params)}) in trl.{module}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = getattr(importlib.import_module(f"trl.{module}"), name, None)
    except ImportError:
        raise _missing(what) from None
    return _checked(found, what, params)


def add_tail_bucket(log_probs: Any, valid_mask: Any) -> tuple[Any, Any]:
    """TRL's `_add_tail_bucket`: the top-k log-probabilities (B, T, K) with a (K+1)-th
    element holding the rest of the vocabulary's mass, and the mask widened with it."""
    fn = _private(SERVER_DISTILLATION, "_add_tail_bucket", ("log_probs", "valid_mask"))
    return fn(log_probs, valid_mask)


def jsd_divergence(student: Any, teacher: Any, beta: float, support_mask: Any) -> Any:
    """TRL's `_jsd_divergence`: the generalized JSD per element (beta 0: forward KL,
    1: reverse KL) between two log-probability tensors, masked positions zero."""
    params = ("student_log_probs", "teacher_log_probs", "beta", "support_mask")
    return _private(SERVER_DISTILLATION, "_jsd_divergence", params)(
        student, teacher, beta, support_mask
    )


def pretokenized_dpo_trainer() -> type:
    """TRL's DPOTrainer over rows already holding prompt_ids / chosen_ids / rejected_ids:
    its private `_prepare_dataset` (which would tokenize them again) returns them as
    they are."""
    from trl import DPOTrainer

    params = ("dataset", "processing_class", "args", "dataset_name")
    _checked(
        getattr(DPOTrainer, "_prepare_dataset", None),
        f"DPOTrainer._prepare_dataset({', '.join(params)})",
        params,
    )

    class PretokenizedDPOTrainer(DPOTrainer):
        def _prepare_dataset(self, dataset: Any, *args: Any, **kwargs: Any) -> Any:
            return dataset

    return PretokenizedDPOTrainer
