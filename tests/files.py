"""Data files the tests generate: official formats, and (from tools/make_example_data.py)
your-own-data .npz and .csv files that a model can learn."""

import gzip
import sys
from pathlib import Path

import numpy as np

from rnn_scripts.data.official import FASHION_FILES

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
from make_example_data import (  # noqa: E402,F401  (the README's example data)
    sentences,
    separable_sequences,
    write_sentences_csv,
    write_sequences_npz,
)

IDX_HEADER = {1: 2049, 3: 2051}


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


def write_regression(path, count=500, seed=0):
    """Sequences whose float target is a mix of two features' means, around 300: a
    regression whose values are far from standardised units."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (count, 20, 2)).astype(np.float32)
    y = 300 + 40 * x[:, -5:, 0].mean(axis=1) + 10 * x[:, :, 1].mean(axis=1)
    split = int(count * 0.8)
    np.savez(
        path, x_train=x[:split], y_train=y[:split], x_test=x[split:], y_test=y[split:]
    )
    return x, y


def write_series(path, rows=400, seed=0, start=0):
    """An hourly series: a date column (text), a daily temperature cycle and a humidity
    that follows it, as a weather file has them; temp is what a run forecasts."""
    rng = np.random.default_rng(seed)
    hours = np.arange(start, start + rows)
    temp = 15 + 8 * np.sin(2 * np.pi * hours / 24) + rng.normal(0, 0.3, rows)
    humidity = 60 - 2 * temp + rng.normal(0, 1, rows)
    lines = ["date,temp,humidity"]
    lines += [
        f"2024-01-{1 + h // 24:02d}T{h % 24:02d},{t:.3f},{u:.3f}"
        for h, t, u in zip(hours, temp, humidity)
    ]
    path.write_text("\n".join(lines) + "\n")
    return temp
