"""Data files the tests generate: official formats, and your-own-data .npz and .csv files
that a model can learn (the classes are easy to tell apart)."""

import csv
import gzip

import numpy as np

from rnn_scripts.data import FASHION_FILES

IDX_HEADER = {1: 2049, 3: 2051}
WORDS = {  # labelled sentences: each class has its own words, among shared filler words
    "cats": "purr whiskers meow kitten litter",
    "dogs": "bark fetch puppy leash kennel",
    "fish": "fins gills aquarium swim scales",
}
FILLER = "the a and with my our very little big happy".split()


def write_mnist_npz(path, train=60, test=10, **overrides):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, train).astype(np.uint8),
        "x_test": rng.integers(0, 256, (test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, test).astype(np.uint8),
    }
    arrays.update(overrides)
    np.savez(path, **arrays)
    return arrays


def write_idx_gz(path, array, magic=None):
    header = np.array([magic or IDX_HEADER[array.ndim], *array.shape], dtype=">u4")
    with gzip.open(path, "wb") as stream:
        stream.write(header.tobytes() + array.astype(np.uint8).tobytes())


def write_fashion_dir(folder, train=60, test=12):
    rng = np.random.default_rng(1)
    arrays = {
        "x_train": rng.integers(0, 256, (train, 28, 28)),
        "y_train": rng.integers(0, 10, train),
        "x_test": rng.integers(0, 256, (test, 28, 28)),
        "y_test": rng.integers(0, 10, test),
    }
    for key, name in FASHION_FILES.items():
        write_idx_gz(folder / name, arrays[key])
    return arrays


def separable_sequences(count, steps=50, features=3, classes=4, seed=0):
    """Noise plus a class-specific offset on one feature in the second half of the steps."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, count)
    x = rng.normal(0, 1, (count, steps, features)).astype(np.float32)
    for c in range(classes):
        x[y == c, steps // 2 :, c % features] += 3.0 if c < features else -3.0
    return x * 4 + 10, y  # raw values far from 0 and 1: standardizing matters


def write_sequences_npz(path, train=600, test=120, with_test=True, **overrides):
    x, y = separable_sequences(train + test)
    arrays = {"x_train": x[:train], "y_train": y[:train]}
    if with_test:
        arrays.update(x_test=x[train:], y_test=y[train:])
    arrays.update(overrides)
    np.savez(path, **arrays)
    return arrays


def sentences(count, seed=0):
    rng = np.random.default_rng(seed)
    names = list(WORDS)
    labels = rng.integers(0, len(names), count)
    texts = []
    for label in labels:
        own = WORDS[names[label]].split()
        words = list(rng.choice(FILLER, 6)) + list(rng.choice(own, 2))
        rng.shuffle(words)
        texts.append(" ".join(words).capitalize() + "!")
    return texts, [names[i] for i in labels]


def write_sentences_csv(path, count=600, text_column="text", label_column="label", seed=0):
    texts, labels = sentences(count, seed)
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow([label_column, text_column])
        writer.writerows(zip(labels, texts))
    return texts, labels
