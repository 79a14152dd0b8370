"""Your own data: --data PATH, with --validation-data and --test-data in the same format.

    .npz              one pair of arrays: x_train/y_train (+ x_test/y_test,
                      class_names), or x/y, x_test/y_test, x_val/y_val (a separate
                      file holds one split)
    .csv .tsv .txt    delimited text: labelled texts (text scripts), numbers
                      (sequence scripts, tables.py), or a time series to forecast
                      (--target, series.py)
    a folder          one sub-folder of .txt files per class (text scripts, folders.py)

The training file decides the kind of examples and the targets (classes or values); the
validation and test files must match it.
"""

import array

import numpy as np

from .. import kinds
from ..errors import say
from .arrays import check_file, read_npz_arrays
from .core import (
    TEST_FRACTION,
    Data,
    DataError,
    Part,
    Split,
    Targets,
    check_classes,
    check_representable,
    same_targets,
    targets_of,
)
from .rows import MAX_TEXT_BYTES, CsvRecords
from .series import Series
from .tables import label_array, label_of, open_table

TABLE_SUFFIXES = (".csv", ".tsv", ".txt")
MAX_VOCABULARY = (
    1_000_000  # word ids above this are not a vocabulary's (an Embedding's rows)
)
PAIRS = (("x_train", "y_train"), ("x", "y"), ("x_test", "y_test"), ("x_val", "y_val"))
PREFERRED = {"training": (0, 1, 2, 3), "test": (2, 1, 3, 0), "validation": (3, 1, 2, 0)}
SCRIPT_FOR = {"sequences": "train_lstm.py", "text": "train_imdb_bilstm.py"}


def load_own(path, reads, layout, validation_path=None, test_path=None):
    """Data from your files; `layout` (core.Layout) says how to read delimited files."""
    parts = read_parts(path, reads, layout)
    train = parts["train"]
    targets, y = targets_of(
        train.labels, layout.task, train.labels_where, train.class_names
    )
    check_classes(targets, train.labels_where)
    data = Data(
        Split(train.x, y), None, train.kind, targets, path.stem or path.name, str(path)
    )
    for role, other in (("test", test_path), ("validation", validation_path)):
        part = (
            read_parts(other, reads, layout, role)["train"] if other else parts.get(role)
        )
        if part is None:
            continue
        if part.kind is not train.kind:
            raise DataError(
                f"{part.where}: holds {part.kind.name}, the training data "
                f"{train.kind.name}"
            )
        if not train.kind.fits_shape(train.x, part.x):
            raise DataError(
                f"{part.where}: examples of shape {part.x.shape[1:]}, the training "
                f"data's {train.x.shape[1:]}"
            )
        setattr(
            data,
            role,
            Split(part.x, same_targets(targets, part.labels, part.labels_where)),
        )
    return data


def read_parts(path, reads, layout, role="training"):
    """{"train": Part, maybe "test": Part} from one path (a separate file: its one
    split)."""
    if path.is_dir():
        if reads != "text":
            raise DataError(
                f"{path}: is a folder; this script reads sequences from an .npz or "
                ".csv file"
            )
        from .folders import read_text_folder

        return read_text_folder(path)
    check_file(path)
    suffix = path.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        return {"train": read_table(path, reads, layout)}
    if suffix == ".npz":
        return read_npz(path, reads, role)
    raise DataError(
        f"{path}: --data reads .npz, .csv, .tsv or .txt files, or a folder of text files"
    )


def read_npz(path, reads, role):
    names = [name for pair in PAIRS for name in pair] + ["class_names"]
    arrays = read_npz_arrays(path, (), names)
    for x, y in PAIRS:
        if (x in arrays) != (y in arrays):
            raise DataError(f"{path}: give both {x} and {y}, or neither")
    found = [PAIRS[i] for i in PREFERRED[role] if PAIRS[i][0] in arrays]
    if not found:
        raise DataError(
            f"{path}: expected arrays x_train and y_train (or x and y, x_test and "
            "y_test)"
        )
    class_names = names_of(path, arrays.get("class_names"))
    parts = {"train": npz_part(path, arrays, *found[0], reads, class_names)}
    if found[0] == PAIRS[0] and PAIRS[2] in found and role == "training":
        parts["test"] = npz_part(path, arrays, *PAIRS[2], reads, class_names)
    elif role != "training" or found[0] not in PAIRS[:2]:
        say(f"{role} data: {path} ({found[0][0]}, {found[0][1]})")
    return parts


def npz_part(path, arrays, x_name, y_name, reads, class_names):
    labels = arrays[y_name]
    kind, x = examples(path, x_name, arrays[x_name], reads)
    if labels.ndim == 0 or len(labels) != len(x):
        raise DataError(
            f"{path}: {x_name} has {len(x)} examples, {y_name} {labels.size} labels"
        )
    return Part(x, labels, kind, f"{path} ({x_name})", f"{path} ({y_name})", class_names)


def names_of(path, names):
    if names is None:
        return None
    if names.ndim != 1 or names.dtype.kind != "U":
        raise DataError(f"{path}: class_names must be a 1-D array of strings")
    return names.tolist()


def examples(path, name, x, reads):
    """(kind, x) of an array of examples; refused where this script cannot read them."""
    where = f"{path} ({name})"
    if x.ndim == 3 and x.dtype == np.uint8:
        kind = kinds.Images
    elif (
        x.ndim in (2, 3)
        and x.dtype.kind in "fiu"
        and not (x.ndim == 2 and x.dtype.kind in "iu")
    ):
        # (N, steps): one feature
        kind, x = (kinds.Sequences, (x[..., None] if x.ndim == 2 else x))
    elif x.ndim == 2 and x.dtype.kind in "iu":
        kind = kinds.WordIds
    else:
        raise DataError(
            f"{where}: expected float sequences (N, steps, features) or (N, steps), "
            "uint8 images (N, rows, columns) or integer word ids (N, steps); got "
            f"{x.dtype} {x.shape}"
        )
    if kind.reads != reads:
        raise DataError(
            f"{where}: holds {kind.name} and this script reads {reads}; train a script "
            f"that reads {kind.name} ({SCRIPT_FOR[kind.reads]})"
        )
    if len(x) == 0:
        raise DataError(f"{where}: no examples")
    if 0 in x.shape[1:]:
        raise DataError(f"{where}: examples of shape {x.shape[1:]} hold no values")
    if kind is kinds.Sequences:
        check_representable(x, where)
    if kind is kinds.WordIds and (x.min() < 0 or x.max() >= MAX_VOCABULARY):
        raise DataError(
            f"{where}: word ids must lie in 0..{MAX_VOCABULARY - 1} (0 = padding), "
            f"got {x.min()}..{x.max()}"
        )
    return kind, x


# --------------------------------------------------------------------------------------
# Delimited files: texts (a column of texts and one of labels, the texts left on disk:
# an index of each record's bytes is kept, and a batch reads its own), or numbers in
# one of two layouts:
# - one row per time step, a tidy table as pandas writes it (df.to_csv(index=False)):
#   a column naming each row's sequence (Layout.sequence), the label column, and the
#   feature columns (every other one, or Layout.features, less Layout.ignore; said at
#   start-up); every sequence has the same number of rows.
# - one row per example, as in keras-io's FordA example (the UCR archive): the label,
#   then one value per time step. Without a header, the first column is the label.
# --------------------------------------------------------------------------------------
def read_table(path, reads, layout):
    """One Part from a delimited file, as `layout` (core.Layout) names its columns."""
    table = open_table(path, layout.delimiter)
    if reads == "text":
        return text_part(table, layout)
    if table.header is not None and layout.sequence in table.header:
        return long_part(table, layout)
    if table.header is not None and layout.sequence != "sequence":
        table.column(layout.sequence, "--sequence-column")  # asked for, and not there
    return wide_part(table, layout)


def text_part(table, layout):
    text_index = table.column(layout.text, "--text-column")
    label_index = table.column(layout.label, "--label-column")
    spans, labels, seen, any_text = array.array("q"), [], {}, False
    for start, end, fields, line in table.records():
        table.check_width(fields, line, len(table.header))
        if end - start > MAX_TEXT_BYTES:
            size = f"{(end - start) / 2**20:.0f} MiB"
            raise DataError(
                f"{table.path}: line {line} holds {size}; a text may hold at most 16 MiB"
            )
        label = label_of(table, fields, label_index, line, layout.label)
        labels.append(seen.setdefault(label, label))
        spans.extend((start, end))
        any_text = any_text or bool(fields[text_index].strip())
    where = f"{table.path} (column {layout.label!r})"
    if not labels:
        raise DataError(f"{table.path}: no rows below the header")
    if not any_text:
        raise DataError(f"{table.path}: every text in column {layout.text!r} is empty")
    spans = np.frombuffer(spans, np.int64).reshape(-1, 2)
    rows = CsvRecords(table.path, spans, text_index, table.delimiter)
    return Part(rows, label_array(labels, where), kinds.Texts, str(table.path), where)


def number(text, table, line, column):
    try:
        return float(text)
    except ValueError:
        name = table.header[column] if table.header else f"{column + 1}"
        value = text.strip()[:40]
        raise DataError(
            f"{table.path}: line {line}, column {name!r}: {value!r} is not a number"
        ) from None


def wide_part(table, layout):
    """One row per example: the label, then the series' values."""
    label_index = table.column(layout.label, "--label-column") if table.header else 0
    values, labels, width = array.array("d"), [], None
    for _, _, fields, line in table.records():
        width = width or len(fields)
        table.check_width(fields, line, width)
        labels.append(label_of(table, fields, label_index, line, layout.label))
        values.extend(
            number(f, table, line, i) for i, f in enumerate(fields) if i != label_index
        )
    if not labels:
        raise DataError(f"{table.path}: no rows of numbers")
    if width < 2:
        raise DataError(f"{table.path}: each row needs a label and at least one value")
    x = np.frombuffer(values, np.float64).reshape(len(labels), width - 1, 1)
    check_representable(x, str(table.path))
    column = f"column {layout.label!r}" if table.header else "first column"
    where = f"{table.path} ({column})"
    return Part(
        x.astype(np.float32),
        label_array(labels, where),
        kinds.Sequences,
        str(table.path),
        where,
    )


def long_part(table, layout):
    """One row per time step: rows grouped into sequences by the sequence column."""
    id_index = table.column(layout.sequence, "--sequence-column")
    label_index = table.column(layout.label, "--label-column")
    features = table.features(layout, (layout.sequence, layout.label))
    say(f"features of {table.path}: {', '.join(table.header[i] for i in features)}")
    sequences = {}
    for _, _, fields, line in table.records():
        table.check_width(fields, line, len(table.header))
        key = fields[id_index]
        label = label_of(table, fields, label_index, line, layout.label)
        steps = sequences.setdefault(key, (label, array.array("d")))
        if steps[0] != label:
            raise DataError(
                f"{table.path}: line {line}: sequence {key!r} has the labels "
                f"{steps[0]!r} and {label!r}"
            )
        steps[1].extend(number(fields[i], table, line, i) for i in features)
    if not sequences:
        raise DataError(f"{table.path}: no rows below the header")
    lengths = {
        key: len(values) // len(features) for key, (_, values) in sequences.items()
    }
    first, length = next(iter(lengths.items()))
    for key, other in lengths.items():
        if other != length:
            raise DataError(
                f"{table.path}: sequence {key!r} has {other} rows, {first!r} {length}: "
                "every sequence needs the same number of time steps"
            )
    x = np.stack([np.frombuffer(values, np.float64) for _, values in sequences.values()])
    x = x.reshape(len(sequences), length, len(features))
    check_representable(x, str(table.path))
    where = f"{table.path} (column {layout.label!r})"
    labels = label_array([label for label, _ in sequences.values()], where)
    return Part(x.astype(np.float32), labels, kinds.Sequences, str(table.path), where)


# --------------------------------------------------------------------------------------
# A series to forecast (--target): windows of consecutive rows, split by time (series.py)
# --------------------------------------------------------------------------------------
def load_series(path, layout, validation_split, validation_path=None, test_path=None):
    series = Series(path, layout)
    window, horizon = layout.window, layout.horizon
    total = len(series.rows)
    if total < window + horizon:
        raise DataError(
            f"{path}: the series has {total} rows, too few for --window {window} and "
            f"--horizon {horizon} (at least {window + horizon})"
        )
    test_rows = int(round(total * TEST_FRACTION)) if test_path is None else 0
    rest = total - test_rows
    validation_rows = (
        int(round(rest * validation_split)) if validation_path is None else 0
    )
    train = series.windows(
        window, horizon, f"{path} (training rows)", slice(0, rest - validation_rows)
    )
    targets = Targets("regression", (layout.target,), "a forecast of --target")
    data = Data(train, None, kinds.Series, targets, path.stem, str(path))
    data.series = {
        "columns": series.names,
        "target": layout.target,
        "window": window,
        "horizon": horizon,
    }
    for role, other, rows in (
        ("test", test_path, slice(rest, total)),
        ("validation", validation_path, slice(rest - validation_rows, rest)),
    ):
        if other is not None:
            separate = Series(other, layout)
            if separate.names != series.names:
                raise DataError(
                    f"{other}: its feature columns are {separate.names}, the training "
                    f"series' {series.names}"
                )
            setattr(data, role, separate.windows(window, horizon, str(other)))
        elif rows.stop > rows.start:
            where = f"{path} ({role} rows: the last {rows.stop - rows.start})"
            setattr(data, role, series.windows(window, horizon, where, rows))
    if data.validation is None:  # --validation-split 0
        data.validation = train.take(np.arange(0))
    return data
