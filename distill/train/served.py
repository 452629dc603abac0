"""Distillation against a teacher's top-k log-probabilities in place of a teacher model
in memory: TRL's GKDTrainer with the student matching them through TRL's sparse loss
(the top-k tokens and one tail bucket for the rest of the vocabulary).

- served (`make_trainer`): asked at every step through `TokenScorer`
  (distill/train/scoring.py); the sampling (`lmbda`), the batches and everything else
  are GKDTrainer's own;
- captured (`captured_trainer`, `CapturedCollator`): read from a capture of the curated
  answers (distill/train/capture.py), each batch's top-k and tail laid out by the
  collator; off-policy only, never sampling.
"""

from __future__ import annotations

from typing import Any

from distill.train.capture_store import CaptureStore
from distill.train.scoring import TokenScorer
from distill.train.trl_private import add_tail_bucket, jsd_divergence


def sparse_divergence(
    student_logits: Any,
    teacher: list[list[list[tuple[int, float]] | None]],
    labels: Any,
    beta: float,
) -> Any:
    """The generalized JSD (TRL's, distill/train/trl_private.py; beta 0 forward KL, 1 reverse KL)
    between the student's and the teacher's next-token distributions, both coarse-grained
    onto the teacher's top-k tokens and one tail bucket for the rest of the vocabulary
    (TRL's), averaged over the answer positions the teacher scored.

    `student_logits`: (B, T, V), row t predicting token t + 1; `labels`: (B, T + 1) with
    -100 off the answer; `teacher[b][t]`: the teacher's pairs for token t + 1 of row b, or
    None."""
    import torch

    b_size, t_size, _ = student_logits.shape
    width = max((len(r) for rows in teacher for r in rows if r), default=1)
    ids = torch.zeros((b_size, t_size, width), dtype=torch.long)
    lps = torch.full((b_size, t_size, width), float("-inf"))
    valid = torch.zeros((b_size, t_size, width), dtype=torch.bool)
    for b, rows in enumerate(teacher):
        for t, pairs in enumerate(rows[:t_size]):
            if pairs and int(labels[b, t + 1]) != -100:
                ids[b, t, : len(pairs)] = torch.tensor([i for i, _ in pairs])
                lps[b, t, : len(pairs)] = torch.tensor([v for _, v in pairs])
                valid[b, t, : len(pairs)] = True
    device = student_logits.device
    return topk_divergence(student_logits, ids.to(device), lps.to(device), valid.to(device), beta)


def topk_divergence(
    student_logits: Any,
    ids: Any,
    teacher_logprobs: Any,
    valid: Any,
    beta: float,
    tail: Any = None,
    num_items: Any = None,
) -> Any:
    """`sparse_divergence` on tensors: `ids`, `teacher_logprobs`, `valid` (B, T, K), the
    teacher's top-k for the token logits row t predicts (a position with no valid entry
    is not counted). `tail` (B, T): the log of the teacher's mass outside its top-k,
    where the teacher computed it (a capture); None: TRL's, from the top-k's own sum.
    With `tail`, the k + 1 buckets are renormalised (quantised log-probabilities sum to
    1 only within their error). The sum over positions is divided by `num_items` (the
    trainer's answer-token count across an accumulated batch, as GKD's own loss does),
    else by the positions counted."""
    import torch

    covered = valid.any(-1)
    neg_inf = torch.full((), float("-inf"), device=student_logits.device)
    student = torch.log_softmax(student_logits.float(), -1).gather(-1, ids)
    student = torch.where(valid, student, neg_inf)
    s, mask = add_tail_bucket(student, valid)
    top = torch.where(valid, teacher_logprobs.float(), neg_inf)
    if tail is None:
        t, _ = add_tail_bucket(top, valid)
    else:
        rest = torch.where(covered, tail.float(), torch.zeros_like(tail.float()))
        t = torch.log_softmax(torch.cat([top, rest.unsqueeze(-1)], -1), -1)
    per_position = jsd_divergence(s, t, beta, mask).sum(-1)
    total = per_position[covered].sum()
    if num_items is not None:
        return total / (num_items.to(total.device) if torch.is_tensor(num_items) else num_items)
    return total / max(int(covered.sum()), 1)


class TopKLoss:
    """The trainers' compute_loss: the student's logits against a teacher given as top-k
    log-probabilities, which each trainer finds its own way (`topk_loss`)."""

    beta: float

    def topk_loss(self, logits: Any, inputs: Any, num_items_in_batch: Any) -> Any:
        raise NotImplementedError

    def compute_loss(
        self,
        model: Any,
        inputs: Any,
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        # logits row t predicts token t + 1
        loss = self.topk_loss(outputs.logits[:, :-1, :], inputs, num_items_in_batch)
        return (loss, outputs) if return_outputs else loss


def make_trainer(base: type) -> type:
    """`base` (TRL's GKDTrainer) with the served teacher in place of a local model: the
    same on-policy sampling (`lmbda`) and batches, the sparse top-k loss."""

    class ServedGKDTrainer(TopKLoss, base):
        served: TokenScorer
        # The loss is a mean over one micro-batch's scored positions: the Trainer divides
        # it by the gradient-accumulation steps (TRL's server path does the same).
        loss_is_scaled_for_ga = False

        def topk_loss(self, logits: Any, inputs: Any, num_items_in_batch: Any) -> Any:
            labels = inputs["labels"]
            sequences, starts, where = [], [], []
            for row, mask, lab in zip(
                inputs["input_ids"], inputs["attention_mask"], labels, strict=True
            ):
                keep = mask.bool()
                positions = keep.nonzero().flatten()
                seq = row[keep].tolist()
                answer = (lab[keep] != -100).nonzero().flatten()
                sequences.append(seq)
                starts.append(int(answer[0]) if len(answer) else len(seq))
                where.append(positions)
            scored = self.served.top_k(sequences, starts)
            # Back to the padded layout, shifted: logits row t predicts token t + 1.
            t_size = labels.shape[1] - 1
            teacher: list[list[list[tuple[int, float]] | None]] = []
            for rows, start, positions in zip(scored, starts, where, strict=True):
                shifted: list[list[tuple[int, float]] | None] = [None] * t_size
                for k, pairs in enumerate(rows):
                    col = int(positions[start + k]) - 1
                    if 0 <= col < t_size:
                        shifted[col] = pairs
                teacher.append(shifted)
            return sparse_divergence(logits, teacher, labels, self.beta)

    return ServedGKDTrainer


def teacher_stand_in(config: Any) -> Any:
    """What GKDTrainer holds as its teacher model when the teacher is served: a module
    with no weights and the student's config (the tokenizer is checked to be the same).
    Accelerate prepares it like any teacher; the loss never runs it, it asks the server."""
    import torch

    class ServedTeacherModule(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.config = config

        def forward(self, *_: Any, **__: Any) -> Any:
            raise RuntimeError("a served teacher is asked through TokenScorer.top_k")

    return ServedTeacherModule()


class CapturedCollator:
    """distill/train/gkd.py's batches, with each row's captured teacher laid out where
    the student's logits predict its tokens: `teacher_ids`, `teacher_logprobs`,
    `teacher_valid` (B, T - 1, K) and `teacher_tail` (B, T - 1)."""

    def __init__(self, base: Any, store: CaptureStore, max_length: int) -> None:
        self.base, self.store, self.max_length = base, store, max_length

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        batch = self.base(examples)
        b_size, width = batch["input_ids"].shape
        k = int(self.store.meta["top_k"])
        ids = torch.zeros((b_size, width - 1, k), dtype=torch.long)
        lps = torch.full((b_size, width - 1, k), float("-inf"))
        tail = torch.zeros((b_size, width - 1))
        for b, e in enumerate(examples):
            row = self.store.read(e["row_key"])
            pad = width - min(len(e["input_ids"]), self.max_length)
            kept = row.positions < self.max_length
            cols = torch.from_numpy(pad + row.positions[kept] - 1)
            ids[b, cols] = torch.from_numpy(row.ids[kept])
            lps[b, cols] = torch.from_numpy(row.logprobs[kept])
            tail[b, cols] = torch.from_numpy(row.tail[kept])
        valid = torch.isfinite(lps)
        return {
            **batch,
            "teacher_ids": ids,
            "teacher_logprobs": lps,
            "teacher_valid": valid,
            "teacher_tail": tail,
        }


def captured_trainer(base: type) -> type:
    """`base` (TRL's GKDTrainer) reading the teacher from the batch's capture: the same
    batches, arguments and loss normalisation as GKD's, never sampling (lmbda 0) and
    never running the teacher model (a stand-in with no weights)."""

    gkd: Any = base

    class CapturedGKDTrainer(TopKLoss, base):
        def training_step(self, model: Any, inputs: Any, num_items_in_batch: Any = None) -> Any:
            # GKDTrainer's step draws on-policy samples with probability lmbda; a
            # capture holds the curated answers only, so the draw is skipped.
            return super(gkd, self).training_step(model, inputs, num_items_in_batch)

        def topk_loss(self, logits: Any, inputs: Any, num_items_in_batch: Any) -> Any:
            return topk_divergence(
                logits,
                inputs["teacher_ids"],
                inputs["teacher_logprobs"],
                inputs["teacher_valid"],
                self.beta,
                tail=inputs["teacher_tail"],
                num_items=num_items_in_batch,
            )

    return CapturedGKDTrainer
