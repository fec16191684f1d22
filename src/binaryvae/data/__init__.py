"""Datasets, the IDX reader, locating/downloading, batching and binarization.

```python
from binaryvae.data import load_dataset, EpochBatches, test_tensor
ds = load_dataset("mnist-mini")                  # uint8 [8000, 784] / [2000, 784]
batches = EpochBatches(ds.train_x, batch_size=128, binarize="dynamic", seed=0)
for x in batches.epoch(0): ...                   # float32 [B, 784]
x_test = test_tensor(ds.test_x, binarize="dynamic", seed=0)   # float32 [2000, 784]
```
"""

from binaryvae.data.batching import EpochBatches, derive_seed, test_tensor, to_float, train_mean
from binaryvae.data.datasets import (
    DATASETS,
    MNIST_MINI_LABEL,
    Dataset,
    DatasetInfo,
    dataset_geometry,
    load_dataset,
    mnist_mini_split,
    with_validation,
)
from binaryvae.data.idx import IdxError, parse_idx, read_idx, read_image_label_pair
from binaryvae.data.toy import sample_toy, toy_log_posterior, toy_log_px, toy_posterior_probs

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetInfo",
    "dataset_geometry",
    "load_dataset",
    "mnist_mini_split",
    "MNIST_MINI_LABEL",
    "EpochBatches",
    "test_tensor",
    "to_float",
    "train_mean",
    "with_validation",
    "derive_seed",
    "IdxError",
    "parse_idx",
    "read_idx",
    "read_image_label_pair",
    "sample_toy",
    "toy_log_px",
    "toy_posterior_probs",
    "toy_log_posterior",
]
