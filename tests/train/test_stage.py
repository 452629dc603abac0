"""The train stage's method table: every method the recipe accepts runs its passes."""

from __future__ import annotations

from typing import get_args

from distill.train.config import Method
from distill.train.stage import METHODS, passes


def test_every_method_the_recipe_accepts_has_its_passes() -> None:
    assert set(METHODS) == set(get_args(Method))
    assert passes("sft") == (True, None)
    assert passes("dpo") == (False, "dpo")
    assert passes("gkd") == (False, "gkd")
    assert passes("sft_then_dpo") == (True, "dpo")
    assert passes("sft_then_gkd") == (True, "gkd")
