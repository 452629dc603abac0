"""The capture's format (train.gkd.capture): log-probabilities round-trip within their
quantisation error at 8 and 16 bits, token ids in 2, 3 or 4 bytes, and a shard gives
back each row's top-k with the tail bucket holding the rest of the mass."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from distill.train.capture_store import (
    RANGE,
    CaptureStore,
    Scored,
    dequantise,
    id_bytes,
    max_error,
    pack_ids,
    quantise,
    unpack_ids,
)


def test_log_probabilities_round_trip_within_their_quantisation_error() -> None:
    rng = np.random.default_rng(0)
    for bits in (8, 16):
        lp = np.concatenate([-rng.exponential(3.0, 5000), [0.0, -1e-6, -1e-3, -RANGE]])
        lp = lp[lp >= -RANGE].astype(np.float32)
        back = dequantise(quantise(lp, bits), bits)
        err = np.abs(back - lp)
        assert (err <= max_error(lp, bits) + 1e-7).all(), (bits, lp[err.argmax()], err.max())
        near = lp > -1e-2  # the companded 8-bit code keeps p ~ 1 within 1e-3 nats
        assert err[near].max() < 2e-3, (bits, err[near].max())
        # no entry stays no entry; below the range is the range's end
        edge = dequantise(quantise(np.array([-np.inf, -50.0]), bits), bits)
        assert edge[0] == -np.inf and (edge[1] == -RANGE if bits == 8 else edge[1] == -50.0)
    assert max_error(np.array([-1.0]), 8)[0] < 0.02 and max_error(np.array([-5.0]), 8)[0] < 0.045
    for vocab, width in ((49_152, 2), (151_665, 3), (1 << 25, 4)):
        assert id_bytes(vocab) == width
        ids = rng.integers(0, vocab, size=(7, 20))
        ids[0, 0] = vocab - 1
        assert (unpack_ids(pack_ids(ids, width)) == ids).all()


def test_a_row_reads_back_from_its_shard_with_its_tail_mass(tmp_path: Path) -> None:
    """A teacher distribution over a 151k vocabulary: the top-k and the tail bucket read
    back hold the whole mass, within the quantisation error."""
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 4, size=(30, 151_665)).astype(np.float64)
    lp = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    order = np.argsort(-lp, axis=1)[:, :20]
    top = np.take_along_axis(lp, order, axis=1)
    mask = np.ones_like(lp, dtype=bool)
    np.put_along_axis(mask, order, False, axis=1)
    tail = np.logaddexp.reduce(np.where(mask, lp, -np.inf), axis=1)
    for bits in (8, 16):
        folder = tmp_path / f"b{bits}"
        meta = {"teacher": {"x": 1}, "teacher_name": "t", "top_k": 20, "bits": bits}
        store = CaptureStore.create(folder, {**meta, "id_bytes": 3, "vocabulary": "v"})
        row = Scored(np.arange(1, 31), order, top.astype(np.float32), tail.astype(np.float32))
        store.add(["k1"], [row])
        got = CaptureStore.open(folder)
        assert got is not None and set(got.rows) == {"k1"}
        back = got.read("k1")
        assert (back.ids == order).all() and (back.positions == np.arange(1, 31)).all()
        assert (np.abs(back.logprobs - top) <= max_error(top, bits) + 1e-6).all()
        assert (np.abs(back.tail - tail) <= max_error(tail, bits) + 1e-6).all()
        mass = np.exp(back.logprobs).sum(1) + np.exp(back.tail)
        # each bucket's probability within its log error: the whole mass within their sum
        spread = np.exp(top) * np.expm1(max_error(top, bits))
        bound = spread.sum(1) + np.exp(tail) * np.expm1(max_error(tail, bits))
        assert (np.abs(mass - 1) <= bound + 1e-6).all()
        assert np.abs(mass - 1).max() < (2e-2 if bits == 8 else 1e-3)
        assert got.size() == (30, next(folder.glob("shard-*.npz")).stat().st_size)


def test_a_capture_in_another_format_is_one_line(tmp_path: Path) -> None:
    import json

    import pytest

    from distill.errors import UserError

    (tmp_path / "capture.json").write_text(json.dumps({"format": 0}))
    with pytest.raises(UserError, match=r"capture format 0, not .*: delete it") as e:
        CaptureStore.open(tmp_path)
    assert "\n" not in str(e.value)
