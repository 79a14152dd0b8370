"""Your own data: --data PATH, with --validation-data and --test-data in the same format.

    .npz              x_train, y_train (+ x_test, y_test, class_names), or x, y
    .csv .tsv .txt    delimited text: labelled texts (text scripts), numbers (sequence
                      scripts, tables.py), or a time series to forecast (--target, series.py)
    a folder          one sub-folder of .txt files per class (text scripts, folders.py)

The training file decides the kind of examples and the targets (classes or values); the
validation and test files must match it.
"""

import numpy as np

from .arrays import check_file, read_npz_arrays
from .core import (
    Data,
    DataError,
    Part,
    Split,
    check_classes,
    check_representable,
    same_targets,
    targets_of,
)

TABLE_SUFFIXES = (".csv", ".tsv", ".txt")
MAX_VOCABULARY = (
    1_000_000  # word ids above this are not a vocabulary's (an Embedding's rows)
)
KINDS_READ = {"sequences": ("images", "sequences"), "text": ("tokens", "texts")}


def load_own(config, reads):
    parts = read_parts(config.data, config, reads, role="training")
    train = parts["train"]
    targets, y = targets_of(train.labels, config.task, train.where, train.class_names)
    check_classes(targets, train.where)
    data = Data(
        Split(train.x, y),
        None,
        train.kind,
        targets,
        config.data.stem or config.data.name,
        str(config.data),
    )
    for role, path in (
        ("test", config.test_data),
        ("validation", config.validation_data),
    ):
        part = parts.get(role)
        if path is not None:
            part = read_parts(path, config, reads, role=role)["train"]
        if part is None:
            continue
        if part.kind != train.kind:
            raise DataError(
                f"{part.where}: holds {part.kind}, the training data {train.kind}"
            )
        check_same_shape(train, part)
        setattr(
            data, role, Split(part.x, same_targets(targets, part.labels, part.where))
        )
    return data


def read_parts(path, config, reads, role):
    """{"train": Part, maybe "test": Part} from one path."""
    if path.is_dir():
        if reads != "text":
            raise DataError(
                f"{path}: is a folder; this script reads sequences from an .npz or .csv file"
            )
        from .folders import read_text_folder

        return read_text_folder(path, role)
    check_file(path)
    suffix = path.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        from .tables import read_table

        return read_table(path, config, reads)
    if suffix == ".npz":
        return read_npz(path, reads)
    raise DataError(
        f"{path}: --data reads .npz, .csv, .tsv or .txt files, or a folder of text files"
    )


def read_npz(path, reads):
    arrays = read_npz_arrays(
        path, (), ("x_train", "y_train", "x_test", "y_test", "x", "y", "class_names")
    )
    prefix = "" if "x" in arrays else "_train"
    if f"x{prefix}" not in arrays or f"y{prefix}" not in arrays:
        raise DataError(f"{path}: expected arrays x_train and y_train (or x and y)")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"{path}: give both x_test and y_test, or neither")
    names = class_names(path, arrays.get("class_names"))
    parts = {"train": npz_part(path, arrays, f"x{prefix}", f"y{prefix}", reads, names)}
    if "x_test" in arrays and prefix:
        parts["test"] = npz_part(path, arrays, "x_test", "y_test", reads, names)
    return parts


def npz_part(path, arrays, x_name, y_name, reads, names):
    x, labels = arrays[x_name], arrays[y_name]
    kind, x = examples(path, x_name, x, reads)
    if labels.ndim == 0 or len(labels) != len(x):
        raise DataError(
            f"{path}: {x_name} has {len(x)} examples, {y_name} {labels.size} labels"
        )
    return Part(x, labels, kind, f"{path} ({y_name})", names)


def class_names(path, names):
    if names is None:
        return None
    if names.ndim != 1 or names.dtype.kind != "U":
        raise DataError(f"{path}: class_names must be a 1-D array of strings")
    return names.tolist()


def examples(path, name, x, reads):
    """(kind, x) for one array of examples; refused where this script cannot read them."""
    where = f"{path} ({name})"
    if x.ndim == 3 and x.dtype == np.uint8:
        kind = "images"
    elif (
        x.ndim in (2, 3)
        and x.dtype.kind in "fiu"
        and not (x.ndim == 2 and x.dtype.kind in "iu")
    ):
        kind, x = (
            "sequences",
            (x[..., None] if x.ndim == 2 else x),
        )  # (N, steps): univariate
    elif x.ndim == 2 and x.dtype.kind in "iu":
        kind = "tokens"
    else:
        raise DataError(
            f"{where}: expected float sequences (N, steps, features) or (N, steps), uint8 "
            f"images (N, rows, columns) or integer word ids (N, steps); got {x.dtype} {x.shape}"
        )
    if kind not in KINDS_READ[reads]:
        other = "train_imdb_bilstm.py" if reads == "sequences" else "train_lstm.py"
        raise DataError(
            f"{where}: holds {kind} and this script reads {reads}; train a script that "
            f"reads {kind} ({other})"
        )
    if len(x) == 0:
        raise DataError(f"{where}: no examples")
    if x.shape[1] == 0 or (x.ndim == 3 and x.shape[2] == 0):
        raise DataError(f"{where}: examples of shape {x.shape[1:]} hold no values")
    if kind == "sequences":
        check_representable(x, where)
    if kind == "tokens" and (x.min() < 0 or x.max() >= MAX_VOCABULARY):
        raise DataError(
            f"{where}: word ids must lie in 0..{MAX_VOCABULARY - 1} (0 = padding), "
            f"got {x.min()}..{x.max()}"
        )
    return kind, x


def check_same_shape(train, part):
    if part.kind in ("texts", "tokens"):
        return
    if part.x.shape[1:] != train.x.shape[1:] and not (
        part.kind == "sequences" and part.x.shape[2:] == train.x.shape[2:]
    ):
        raise DataError(
            f"{part.where}: examples of shape {part.x.shape[1:]}, the training data's {train.x.shape[1:]}"
        )
