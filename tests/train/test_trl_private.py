"""TRL's private names behind distill/train/trl_private.py: read from the versions it
names, a TRL without them is one line naming the installed version, and the sparse
top-k loss built on them (a served teacher's, a captured one's)."""

from __future__ import annotations

from importlib import metadata
from typing import Any

import pytest

from distill.errors import UserError
from distill.train import trl_private


@pytest.fixture
def fresh_lookup() -> Any:
    trl_private._private.cache_clear()
    yield
    trl_private._private.cache_clear()


def test_the_installed_trl_is_one_the_private_names_were_read_from() -> None:
    """An upgrade fails here first: read the names in its source, then add its version."""
    assert metadata.version("trl") in trl_private.READ_FROM


def test_a_trl_without_a_private_name_is_one_line_naming_its_version(
    monkeypatch: pytest.MonkeyPatch, fresh_lookup: Any
) -> None:
    import torch

    module = trl_private.trl_experimental("server_distillation.server_distillation_trainer")
    monkeypatch.delattr(module, "_add_tail_bucket")
    with pytest.raises(UserError) as err:
        trl_private.add_tail_bucket(torch.zeros(1, 1, 2), torch.ones(1, 1, 2, dtype=torch.bool))
    message = str(err.value)
    assert "\n" not in message
    assert f"trl {metadata.version('trl')} has no _add_tail_bucket(log_probs, valid_mask)" in (
        message
    )
    assert "read from trl 1.15.0 and 1.16.0" in message


def test_a_private_name_whose_parameters_changed_is_refused(
    monkeypatch: pytest.MonkeyPatch, fresh_lookup: Any
) -> None:
    module = trl_private.trl_experimental("server_distillation.server_distillation_trainer")
    monkeypatch.setattr(module, "_jsd_divergence", lambda s, t, beta, mask, temperature: 0)
    with pytest.raises(UserError, match=r"has no _jsd_divergence\(student_log_probs, "):
        trl_private.jsd_divergence(None, None, 0.5, None)


def test_dpo_trainers_private_hook_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    import trl

    assert issubclass(trl_private.pretokenized_dpo_trainer(), trl.DPOTrainer)
    monkeypatch.setattr(trl.DPOTrainer, "_prepare_dataset", lambda self, dataset: dataset)
    with pytest.raises(UserError, match=r"has no DPOTrainer._prepare_dataset\(dataset, "):
        trl_private.pretokenized_dpo_trainer()


def test_the_sparse_loss_is_zero_against_the_students_own_top_k_and_skips_prompts() -> None:
    """The served teacher's loss: the generalized JSD over the teacher's top-k tokens and
    one tail bucket, over the answer positions the teacher scored."""
    import torch

    from distill.train.served import sparse_divergence

    torch.manual_seed(0)
    logits = torch.randn(1, 3, 10)
    own = torch.log_softmax(logits, -1)
    labels = torch.tensor([[-100, 5, 6, 7]])  # row t predicts token t + 1: all answer

    def top(row: Any, k: int = 4) -> list[tuple[int, float]]:
        values, ids = row.topk(k)
        return [(int(i), float(v)) for i, v in zip(ids, values, strict=True)]

    same = [[top(own[0, t]) for t in range(3)]]
    assert float(sparse_divergence(logits, same, labels, 0.5)) == pytest.approx(0, abs=1e-6)
    other = [[top(torch.log_softmax(torch.randn(10), -1)) for _ in range(3)]]
    apart = float(sparse_divergence(logits, other, labels, 0.5))
    assert apart > 0.01
    # Positions off the answer, or the teacher did not score, do not count.
    partly = [[other[0][0], None, other[0][2]]]
    prompt = torch.tensor([[-100, -100, 6, 7]])
    one = float(sparse_divergence(logits, partly, prompt, 0.5))
    only_last = float(sparse_divergence(logits, [[None, None, other[0][2]]], labels, 0.5))
    assert one == pytest.approx(only_last)


def test_the_loss_from_a_capture_is_the_sparse_jsd() -> None:
    """Zero against the student's own top-k and tail, positive against another
    distribution, with finite gradients where the teacher left positions unscored."""
    import torch

    from distill.train.served import topk_divergence

    torch.manual_seed(0)
    logits = torch.randn(1, 4, 50, requires_grad=True)
    own = torch.log_softmax(logits.detach(), -1)
    top = own.topk(5, -1)
    rest = own.scatter(-1, top.indices, float("-inf")).logsumexp(-1)
    valid = torch.ones(1, 4, 5, dtype=torch.bool)
    valid[0, 1] = False  # an unscored position
    zero = topk_divergence(logits, top.indices, top.values, valid, 0.5, tail=rest)
    assert float(zero.detach()) == pytest.approx(0, abs=1e-6)
    other = torch.log_softmax(torch.randn(1, 4, 50), -1).topk(5, -1)
    loss = topk_divergence(logits, other.indices, other.values, valid, 0.5, tail=rest)
    assert float(loss.detach()) > 0.01
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert float(logits.grad[0, 1].abs().sum()) == 0  # the unscored position trains nothing
