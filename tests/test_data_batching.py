"""Epoch batching by index tensors and the three pixel modes."""

from __future__ import annotations

import pytest
import torch

from binaryvae.data import EpochBatches, load_dataset, test_tensor
from binaryvae.errors import BadInput


def _indexed_images(n: int = 300, d: int = 6) -> torch.Tensor:
    """uint8 [n, d]: row i holds i in its first two bytes, grey levels elsewhere."""
    x = torch.randint(0, 256, (n, d), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    i = torch.arange(n)
    x[:, 0], x[:, 1] = (i // 256).to(torch.uint8), (i % 256).to(torch.uint8)
    return x


def _row_ids(batches: list[torch.Tensor]) -> torch.Tensor:
    x = torch.cat(batches)  # float32 [N, D], grey levels
    return (x[:, 0] * 255).round().long() * 256 + (x[:, 1] * 255).round().long()


def test_epoch_visits_every_row_once_in_a_seeded_order():
    x = _indexed_images()
    b = EpochBatches(x, batch_size=64, binarize="none", seed=3)
    assert len(b) == 5  # 300 = 4 * 64 + 44: the partial batch is kept
    e0 = list(b.epoch(0))
    assert [len(t) for t in e0] == [64, 64, 64, 64, 44]
    assert all(t.dtype == torch.float32 and t.shape[1] == 6 for t in e0)
    ids0 = _row_ids(e0)
    assert sorted(ids0.tolist()) == list(range(300))
    assert not torch.equal(ids0, torch.arange(300))  # shuffled
    ids1 = _row_ids(list(b.epoch(1)))
    assert not torch.equal(ids0, ids1)  # a new order every epoch
    # any epoch is reproducible on its own, by a fresh object, in any order (exact resume)
    again = EpochBatches(x, batch_size=64, binarize="none", seed=3)
    assert torch.equal(_row_ids(list(again.epoch(1))), ids1)
    assert torch.equal(_row_ids(list(again.epoch(0))), ids0)
    other_seed = EpochBatches(x, batch_size=64, binarize="none", seed=4)
    assert not torch.equal(_row_ids(list(other_seed.epoch(0))), ids0)


def test_grey_levels_and_threshold_are_exact():
    x = torch.arange(256, dtype=torch.uint8).reshape(64, 4)
    grey = test_tensor(x, "none")
    assert torch.equal(grey, x.float() / 255)
    thr = test_tensor(x, "threshold")
    assert torch.equal(thr, (x.float() / 255 > 0.5).float())
    assert thr.sum() == 128  # 128..255
    batches = torch.cat(list(EpochBatches(x, 16, "threshold", seed=0).epoch(0)))
    assert torch.equal(batches.sum(0), thr.sum(0))  # same rows, other order


def test_dynamic_binarization_per_epoch_and_reproducible():
    ds = load_dataset("mnist-mini")
    x = ds.train_x[:1000]
    b = EpochBatches(x, batch_size=250, binarize="dynamic", seed=7)
    e0, e1 = torch.cat(list(b.epoch(0))), torch.cat(list(b.epoch(1)))
    assert set(e0.unique().tolist()) == {0.0, 1.0}
    again = EpochBatches(x, batch_size=250, binarize="dynamic", seed=7)
    assert torch.equal(torch.cat(list(again.epoch(1))), e1)  # same seed: same draws
    assert torch.equal(torch.cat(list(again.epoch(0))), e0)
    # different draws each epoch: compare in the original row order
    order0, order1 = b.order(0), b.order(1)
    r0 = torch.empty_like(e0).index_copy_(0, order0, e0)
    r1 = torch.empty_like(e1).index_copy_(0, order1, e1)
    grey = x.float() / 255
    uncertain = (grey > 0.1) & (grey < 0.9)
    assert (r0 != r1)[uncertain].float().mean() > 0.2
    assert torch.equal(r0[grey == 0], grey[grey == 0])  # black stays black
    assert torch.equal(r0[grey == 1], grey[grey == 1])
    # unbiased: the mean draw matches the grey level (N ~ 784k pixels; 5-sigma bound < 0.003)
    assert abs(r0.mean() - grey.mean()) < 0.003
    other = EpochBatches(x, batch_size=250, binarize="dynamic", seed=8)
    assert not torch.equal(torch.cat(list(other.epoch(0))), e0)


def test_dynamic_test_tensor_is_fixed_by_its_seed():
    x = load_dataset("mnist-mini").test_x[:500]
    a, b = test_tensor(x, "dynamic", seed=0), test_tensor(x, "dynamic", seed=0)
    assert torch.equal(a, b) and a.shape == (500, 784) and a.dtype == torch.float32
    assert not torch.equal(a, test_tensor(x, "dynamic", seed=1))


def test_real_valued_data_takes_only_none():
    toy = load_dataset("toy")
    b = EpochBatches(toy.train_x, batch_size=1000, binarize="none", seed=0)
    got = torch.cat(list(b.epoch(0)))  # float32 [8000, 8], shuffled
    assert torch.equal(got, toy.train_x[b.order(0)])
    for mode in ("threshold", "dynamic"):
        with pytest.raises(BadInput, match="real-valued"):
            EpochBatches(toy.train_x, batch_size=10, binarize=mode, seed=0)
        with pytest.raises(BadInput, match="real-valued"):
            test_tensor(toy.test_x, mode)


def test_bad_arguments():
    x = _indexed_images(10)
    with pytest.raises(BadInput, match="unknown binarization"):
        EpochBatches(x, 4, "sometimes", 0)
    with pytest.raises(BadInput, match="batch size"):
        EpochBatches(x, 0, "none", 0)
