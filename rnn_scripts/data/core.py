"""What every source returns, and the checks and splits they share.

A Split holds one split's examples: `x` (a NumPy array, a list of word-id lists, or rows
read from disk batch by batch: see rows.py) and `y` (class ids, or float target values),
always in memory. Data holds the train, validation and test splits, the kind of examples
(a class of kinds.py) and what the targets are.
"""

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from ..errors import UserError

TEST_FRACTION = 0.2  # held out as the test set when your data bring none
MAX_CLASSES = 100_000
MAX_TARGET_VALUE = (
    1e30  # float32 holds up to 3.4e38; squared errors must stay finite too
)


class DataError(UserError):
    """A data file that cannot be used as given; the message names the file."""


@dataclass(frozen=True)
class Layout:
    """How to read your own files, from the command line (data.load) or a caller: the
    task, the columns of a delimited file, and the target, window and horizon of a
    series. `features` empty: every numeric column the others do not name."""

    task: str = "auto"
    delimiter: str = None
    label: str = "label"
    text: str = "text"
    sequence: str = "sequence"
    features: tuple = ()
    ignore: tuple = ()
    target: str = None
    window: int = 24
    horizon: int = 1


@dataclass(frozen=True)
class Targets:
    """classification: `names` are the class names (class id i is names[i]); regression:
    the target values' names, one per output. `why`: how the task was chosen."""

    task: str
    names: tuple
    why: str = ""

    @property
    def is_regression(self):
        return self.task == "regression"


class Part:
    """One file's examples before the targets are known: x, raw labels, their kind, where
    the examples are (`where`) and where their labels are (`labels_where`)."""

    def __init__(self, x, labels, kind, where, labels_where=None, class_names=None):
        self.x, self.labels, self.kind, self.where = x, labels, kind, where
        self.labels_where, self.class_names = labels_where or where, class_names


class Split:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def take(self, rows):
        return Split(take(self.x, rows), self.y[rows])

    @property
    def streamed(self):
        return hasattr(self.x, "read")


def take(x, rows):
    """The examples `rows` of x: an array, a list (word-id lists of varied length), or
    rows read from disk (data/rows.py)."""
    if isinstance(x, np.ndarray):
        return x[rows]
    if isinstance(x, list):
        return [x[i] for i in rows]
    return x.take(rows)


class Data:
    """Raw examples of one kind in three splits, what the targets are, and the source."""

    def __init__(self, train, test, kind, targets, name, source, validation=None):
        self.train, self.test, self.validation = train, test, validation
        self.kind, self.targets, self.name, self.source = kind, targets, name, source
        self.synthetic, self.note, self.word_index, self.series = False, None, None, None

    @property
    def class_names(self):
        return list(self.targets.names)

    def limit(self, n):
        """The first n training and n/6 test (and validation) examples."""
        self.train = self.train.take(np.arange(min(n, len(self.train))))
        for name in ("test", "validation"):
            split = getattr(self, name)
            if split is not None:
                setattr(self, name, split.take(np.arange(min(n // 6, len(split)))))

    def hold_out(self, validation_fraction, seed):
        """A test split where the source brought none (TEST_FRACTION), then the
        validation split (a shuffled hold-out: Keras' validation_split would take the
        last rows)."""
        if self.test is None:
            self.train, self.test = split(self.train, TEST_FRACTION, seed, self.source)
        if self.validation is None:
            self.train, self.validation = split(
                self.train, validation_fraction, seed, self.source
            )

    def check_not_empty(self):
        for name in ("train", "test"):
            if len(getattr(self, name)) == 0:
                raise DataError(f"{self.source}: the {name} split has no examples")

    def fingerprint(self):
        """A hash of what defines the data: every example and target of every split, the
        kind, the task and the names of the classes (or targets) and a series'
        columns."""
        digest = hashlib.sha256(self.kind.name.encode())
        described = [self.targets.task, list(self.targets.names), self.series]
        digest.update(json.dumps(described, sort_keys=True).encode())
        for split_ in (self.train, self.validation, self.test):
            digest_into(digest, split_.x)
            digest.update(np.ascontiguousarray(split_.y).tobytes())
        return digest.hexdigest()

    def describe(self):
        names = "targets" if self.targets.is_regression else "classes"
        return {
            "name": self.name,
            "source": self.source,
            "kind": self.kind.name,
            "task": self.targets.task,
            "synthetic": self.synthetic,
            "sample": self.name == "mnist-sample",
            "note": self.note,
            names: self.class_names,
        }


def digest_into(digest, x):
    if hasattr(x, "digest_into"):
        x.digest_into(digest)
    elif isinstance(x, list):
        digest.update(json.dumps([list(map(int, row)) for row in x]).encode())
    else:
        digest.update(str(x.shape).encode())
        digest.update(np.ascontiguousarray(x).tobytes())


def split(examples, fraction, seed, source):
    """(kept, held out): a seeded shuffle, at least one example held out when fraction >
    0, and at least one kept."""
    order = np.random.default_rng(seed).permutation(len(examples))
    held_out = int(round(len(examples) * fraction))
    if fraction and held_out == 0:
        held_out = 1
    if held_out >= len(examples):
        held = f"holding out {fraction:g} of {len(examples)} examples"
        raise DataError(f"{source}: {held} leaves none to train on")
    return examples.take(np.sort(order[held_out:])), examples.take(
        np.sort(order[:held_out])
    )


# --------------------------------------------------------------------------------------
# Targets: class ids, class names or values
# --------------------------------------------------------------------------------------
def targets_of(labels, task, where, class_names=None):
    """(Targets, y) from one file's labels: integers are class ids, text labels are class
    names (sorted into ids), floats are values (regression), and labels the file names
    classes of (class_names) are classes whatever their type; `task` may insist."""
    labels = np.asarray(labels)
    if labels.ndim == 0 or len(labels) == 0:
        raise DataError(f"{where}: no labels")
    why = f"--task {task}"
    if task == "auto":
        task, why = auto_task(labels, class_names)
    if task == "regression":
        targets, values = regression_targets(labels, where)
        return Targets("regression", targets.names, why), values
    if labels.dtype.kind in "US":
        targets, y = named_classes(labels.astype(str), where, class_names)
    else:
        targets, y = numbered_classes(labels, where, class_names)
    return Targets("classification", targets.names, why), y


def auto_task(labels, class_names):
    """(task, why) for --task auto."""
    if class_names is not None:
        return "classification", "the file names its classes"
    if labels.dtype.kind != "f":
        return "classification", "the labels are integers or text"
    whole = np.isfinite(labels).all() and (labels == np.round(labels)).all()
    if whole:
        return (
            "regression",
            "float labels, all whole numbers: --task classification for classes",
        )
    return "regression", "float targets: --task classification for classes"


def regression_targets(values, where):
    if values.dtype.kind in "US":
        values = numbers(values, where)
    if values.dtype.kind not in "iufb" or values.ndim > 2:
        raise DataError(
            f"{where}: targets must be numbers, one or several per example, got "
            f"{values.dtype} {values.shape}"
        )
    check_representable(values, where)
    values = values.astype(np.float32).reshape(len(values), -1)
    if values.shape[1] == 0:
        raise DataError(f"{where}: the targets have no values")
    count = values.shape[1]
    names = ("value",) if count == 1 else tuple(f"value_{i}" for i in range(count))
    return Targets("regression", names), values


def numbers(texts, where):
    try:
        return np.array([float(t) for t in texts], dtype=np.float64)
    except ValueError:
        bad = next(t for t in texts if not is_number(t))
        raise DataError(f"{where}: the target {bad!r} is not a number") from None


def is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def check_representable(values, where):
    """Finite values that float32 (and their squares) can hold."""
    values = np.asarray(values)
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise DataError(f"{where}: holds NaN or infinite values")
    if values.size and np.abs(values).max() > MAX_TARGET_VALUE:
        raise DataError(
            f"{where}: holds {float(np.abs(values).max()):.3g}, beyond what float32 "
            f"training handles (|x| <= {MAX_TARGET_VALUE:g}); rescale it"
        )


def numbered_classes(labels, where, class_names=None):
    if labels.ndim != 1:
        raise DataError(
            f"{where}: class labels must be one per example (a 1-D array), got shape "
            f"{labels.shape}"
        )
    if labels.dtype.kind == "f":
        if not (np.isfinite(labels).all() and (labels == np.round(labels)).all()):
            raise DataError(
                f"{where}: class labels must be whole numbers (or use --task regression)"
            )
    elif labels.dtype.kind not in "iub":
        raise DataError(
            f"{where}: labels must be integers, text or floats, got {labels.dtype}"
        )
    if labels.min() < 0:
        raise DataError(
            f"{where}: class ids must be 0, 1, 2, ... (got {labels.min():g})"
        )
    largest, distinct = int(labels.max()), len(np.unique(labels))
    if largest >= MAX_CLASSES or largest + 1 > 2 * distinct + 10:
        raise DataError(
            f"{where}: {distinct} distinct labels, the largest {largest}: class ids "
            "must be 0..C-1 (for values to predict, use --task regression)"
        )
    if class_names is None:
        class_names = [str(c) for c in range(largest + 1)]
    elif len(class_names) <= largest:
        raise DataError(
            f"{where}: class id {largest} has no name ({len(class_names)} class_names)"
        )
    return Targets("classification", tuple(class_names)), labels.astype(np.int64)


def named_classes(labels, where, class_names=None):
    names = class_names or sorted(set(labels.tolist()))
    if len(names) > MAX_CLASSES:
        raise DataError(
            f"{where}: {len(names)} distinct labels; at most {MAX_CLASSES} classes"
        )
    lookup = {name: i for i, name in enumerate(names)}
    unknown = [label for label in labels.tolist() if label not in lookup]
    if unknown:
        raise DataError(
            f"{where}: the label {unknown[0]!r} is not one of the training classes"
        )
    ids = np.array([lookup[v] for v in labels.tolist()], np.int64)
    return Targets("classification", tuple(names)), ids


def check_classes(targets, where):
    if not targets.is_regression and len(targets.names) < 2:
        only = targets.names[0] if targets.names else None
        raise DataError(
            f"{where}: every label is {only!r}; a classifier needs two classes or more"
        )
    if len(set(targets.names)) != len(targets.names):
        raise DataError(f"{where}: class names repeat ({', '.join(targets.names)})")


def same_targets(train, labels, where):
    """y of a validation or test file, in the training file's classes (or targets): a
    class id beyond the training classes is refused, whatever the labels' type."""
    labels = np.asarray(labels)
    if train.is_regression:
        found, values = regression_targets(labels, where)
        if len(found.names) != len(train.names):
            raise DataError(
                f"{where}: {len(found.names)} target values per example, training has "
                f"{len(train.names)}"
            )
        return values
    if labels.dtype.kind in "US":
        return named_classes(labels.astype(str), where, list(train.names))[1]
    _, ids = numbered_classes(labels, where)
    if ids.max() >= len(train.names):
        last = len(train.names) - 1
        raise DataError(
            f"{where}: has class {ids.max()}, beyond the training classes 0..{last}"
        )
    return ids
