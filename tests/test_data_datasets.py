"""The dataset registry and the shipped mnist-mini."""

from __future__ import annotations

import pytest
import torch

from binaryvae.data import DATASETS, load_dataset, mnist_mini_split, read_image_label_pair
from binaryvae.data.datasets import MNIST_MINI_DIR
from binaryvae.errors import BadInput


def test_registry_names():
    assert list(DATASETS) == ["mnist-mini", "mnist", "fashion-mnist", "toy"]


def test_mnist_mini_is_the_mnist_test_set_split_8000_2000():
    ds = load_dataset("mnist-mini")
    assert "10k subset of MNIST" in ds.label
    assert ds.kind == "image" and ds.image_shape == (28, 28) and ds.data_dim == 784
    assert ds.train_x.shape == (8000, 784) and ds.test_x.shape == (2000, 784)
    assert ds.train_x.dtype == torch.uint8 and ds.train_y.dtype == torch.int64
    x, y, _ = read_image_label_pair(MNIST_MINI_DIR / "t10k-images-idx3-ubyte.gz",
                                    MNIST_MINI_DIR / "t10k-labels-idx1-ubyte.gz")
    train, test = mnist_mini_split()
    # disjoint, complete, and the documented rule: image i is a test image when i % 5 == 4
    assert torch.equal(torch.sort(torch.cat([train, test])).values, torch.arange(10000))
    assert torch.equal(test, torch.arange(4, 10000, 5))
    assert torch.equal(ds.test_x, x[4::5]) and torch.equal(ds.test_y, y[4::5])
    assert torch.equal(ds.train_x[:4], x[:4]) and torch.equal(ds.train_x[4], x[5])
    # every class is in both parts, in about its overall share
    assert (ds.test_y.bincount(minlength=10) > 150).all()
    assert torch.equal(load_dataset("mnist-mini").train_x, ds.train_x)  # deterministic


def test_mnist_mini_license_note_is_shipped():
    note = (MNIST_MINI_DIR / "LICENSE.md").read_text()
    assert "LeCun" in note and "Cortes" in note and "Burges" in note and "CC BY-SA 3.0" in note


def test_unknown_dataset():
    with pytest.raises(BadInput, match="unknown dataset 'cifar'; choose one of mnist-mini"):
        load_dataset("cifar")
