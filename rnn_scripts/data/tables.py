"""Delimited text files (.csv, .tsv, .txt): the delimiter sniffed (or --delimiter), a UTF-8
byte-order mark (Excel writes one) dropped, and every problem one line naming the file, the
line and the delimiter where it matters.

Text scripts read a column of texts and a column of labels (--text-column, --label-column).
The texts stay on disk: an index of each record's bytes is kept, and a batch reads its own.

Sequence scripts read numbers, in one of two layouts:
- one row per time step, a tidy table as pandas writes it (df.to_csv(index=False)): a
  column naming each row's sequence (--sequence-column, default "sequence"), the label
  column, and one column per feature; every sequence has the same number of rows. A file
  with the sequence column has this layout.
- one row per example, as in keras-io's FordA example (the UCR archive): the label, then
  one value per time step (a univariate series). Without a header, the first column is
  the label.
"""

import array
import codecs
import csv
import io
import re

import numpy as np

from ..errors import first_line
from .core import DataError, Part, check_representable, is_number
from .rows import CsvRecords, large_fields

SNIFF_BYTES = 64 * 1024
DELIMITERS = ",;\t|"
INTEGER = re.compile(r"[+-]?[0-9]+\Z", re.ASCII)


class Table:
    """How a delimited file is laid out: its delimiter and header (None: no header)."""

    def __init__(self, path, delimiter, header):
        self.path, self.delimiter, self.header = path, delimiter, header

    @property
    def delimiter_name(self):
        return {"\t": "tab", ",": "comma", ";": "semicolon", "|": "bar"}.get(
            self.delimiter, repr(self.delimiter)
        )

    def column(self, name, flag):
        """The index of a named column; one line listing the columns if it is missing."""
        if self.header is None or name not in self.header:
            found = ", ".join(self.header or []) or "none: the first row holds numbers"
            raise DataError(
                f"{self.path}: no column {name!r} (columns read with the {self.delimiter_name} "
                f"as delimiter: {found}); name it with {flag}, or give --delimiter"
            )
        if self.header.count(name) > 1:
            raise DataError(f"{self.path}: the header names the column {name!r} twice")
        return self.header.index(name)

    def records(self):
        """(start byte, end byte, fields, line) of every record after the header."""
        pending, position = [], [0]

        def lines(stream):
            for raw in stream:
                pending.append(position[0])
                position[0] += len(raw)
                yield raw.decode("utf-8")

        with open(self.path, "rb") as stream, large_fields():
            reader = csv.reader(lines(stream), delimiter=self.delimiter)
            try:
                if self.header is not None:
                    next(reader, None)
                    pending.clear()
                for fields in reader:
                    start = pending[0]
                    pending.clear()
                    if fields:  # a blank line
                        yield start, position[0], fields, reader.line_num
            except UnicodeDecodeError as error:
                raise DataError(
                    f"{self.path}: not UTF-8 text (line {reader.line_num + 1}: {error.reason})"
                ) from None
            except csv.Error as error:
                raise DataError(
                    f"{self.path}: line {reader.line_num}: {first_line(error)}"
                ) from None

    def check_width(self, fields, line, width):
        if len(fields) != width:
            raise DataError(
                f"{self.path}: line {line} has {len(fields)} fields, the first row {width} "
                f"(read with the {self.delimiter_name} as delimiter)"
            )


def open_table(path, delimiter=None):
    """The file's Table: the delimiter as given or sniffed, and the header if the first row
    is not all numbers."""
    with open(path, "rb") as stream:
        sample = stream.read(SNIFF_BYTES)
    sample = sample.removeprefix(codecs.BOM_UTF8)
    text = sample.decode(
        "utf-8", errors="ignore"
    )  # the sample may end inside a character
    if not text.strip():
        raise DataError(f"{path}: the file is empty")
    if "\0" in text:
        raise DataError(f"{path}: holds NUL bytes; not a text file")
    if delimiter is None:
        delimiter = sniff_delimiter(path, text)
    with large_fields():
        try:
            first = next(csv.reader(io.StringIO(text), delimiter=delimiter))
        except csv.Error as error:
            raise DataError(f"{path}: line 1: {first_line(error)}") from None
    header = [name.strip() for name in first] if not all(map(is_number, first)) else None
    return Table(path, delimiter, header)


def sniff_delimiter(path, text):
    if path.suffix.lower() == ".tsv":
        return "\t"
    try:
        return (
            csv.Sniffer().sniff("\n".join(text.splitlines()[:20]), DELIMITERS).delimiter
        )
    except csv.Error:
        return ","


def label_array(labels, where):
    """Integer labels (ASCII digits) as ints, other numbers as floats, anything else as text."""
    if all(INTEGER.match(label) for label in labels):
        try:
            return np.array([int(label) for label in labels], dtype=np.int64)
        except OverflowError:
            raise DataError(f"{where}: a label is too large for a class id") from None
    if all(map(is_number, labels)):
        return np.array([float(label) for label in labels], dtype=np.float64)
    return np.array(labels, dtype=str)


# --------------------------------------------------------------------------------------
# What the scripts read
# --------------------------------------------------------------------------------------
def read_table(path, config, reads):
    table = open_table(path, config.delimiter)
    if reads == "text":
        return {"train": text_part(table, config.text_column, config.label_column)}
    if table.header is not None and config.sequence_column in table.header:
        return {"train": long_part(table, config)}
    return {"train": wide_part(table, config.label_column)}


def text_part(table, text_column, label_column):
    text_index = table.column(text_column, "--text-column")
    label_index = table.column(label_column, "--label-column")
    spans, labels, seen, any_text = array.array("q"), [], {}, False
    for start, end, fields, line in table.records():
        table.check_width(fields, line, len(table.header))
        label = fields[label_index].strip()
        if not label:
            raise DataError(
                f"{table.path}: line {line} has no label (column {label_column!r})"
            )
        labels.append(seen.setdefault(label, label))
        spans.extend((start, end))
        any_text = any_text or bool(fields[text_index].strip())
    where = f"{table.path} (column {label_column!r})"
    if not labels:
        raise DataError(f"{table.path}: no rows below the header")
    if not any_text:
        raise DataError(f"{table.path}: every text in column {text_column!r} is empty")
    rows = CsvRecords(
        table.path,
        np.frombuffer(spans, np.int64).reshape(-1, 2),
        text_index,
        table.delimiter,
    )
    return Part(rows, label_array(labels, where), "texts", where)


def number(text, table, line, column):
    try:
        value = float(text)
    except ValueError:
        name = table.header[column] if table.header else f"{column + 1}"
        raise DataError(
            f"{table.path}: line {line}, column {name!r}: {text.strip()!r} is not a number"
        ) from None
    return value


def wide_part(table, label_column):
    """One row per example: the label, then the series' values."""
    label_index = table.column(label_column, "--label-column") if table.header else 0
    values, labels, width = array.array("d"), [], None
    for _, _, fields, line in table.records():
        width = width or len(fields)
        table.check_width(fields, line, width)
        labels.append(fields[label_index].strip())
        values.extend(
            number(f, table, line, i) for i, f in enumerate(fields) if i != label_index
        )
    if not labels:
        raise DataError(f"{table.path}: no rows of numbers")
    if width < 2:
        raise DataError(f"{table.path}: each row needs a label and at least one value")
    x = np.frombuffer(values, np.float64).reshape(len(labels), width - 1, 1)
    where = (
        f"{table.path} (column {label_column!r})"
        if table.header
        else f"{table.path} (first column)"
    )
    check_representable(x, str(table.path))
    return Part(x.astype(np.float32), label_array(labels, where), "sequences", where)


def long_part(table, config):
    """One row per time step: rows grouped into sequences by the sequence column."""
    id_index = table.column(config.sequence_column, "--sequence-column")
    label_index = table.column(config.label_column, "--label-column")
    features = [i for i in range(len(table.header)) if i not in (id_index, label_index)]
    if not features:
        raise DataError(
            f"{table.path}: no feature columns beside {config.sequence_column!r} and {config.label_column!r}"
        )
    sequences = {}
    for _, _, fields, line in table.records():
        table.check_width(fields, line, len(table.header))
        key, label = fields[id_index], fields[label_index].strip()
        steps = sequences.setdefault(key, (label, array.array("d"), line))
        if steps[0] != label:
            raise DataError(
                f"{table.path}: line {line}: sequence {key!r} has the labels {steps[0]!r} and {label!r}"
            )
        steps[1].extend(number(fields[i], table, line, i) for i in features)
    if not sequences:
        raise DataError(f"{table.path}: no rows below the header")
    lengths = {
        key: len(values) // len(features) for key, (_, values, _) in sequences.items()
    }
    first, length = next(iter(lengths.items()))
    for key, other in lengths.items():
        if other != length:
            raise DataError(
                f"{table.path}: sequence {key!r} has {other} rows, {first!r} {length}: every "
                "sequence needs the same number of time steps"
            )
    x = np.stack(
        [np.frombuffer(values, np.float64) for _, values, _ in sequences.values()]
    )
    x = x.reshape(len(sequences), length, len(features))
    check_representable(x, str(table.path))
    where = f"{table.path} (column {config.label_column!r})"
    labels = [label for label, _, _ in sequences.values()]
    return Part(x.astype(np.float32), label_array(labels, where), "sequences", where)
