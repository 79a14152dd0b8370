"""Delimited text files (.csv, .tsv, .txt): the delimiter sniffed (or --delimiter), a
UTF-8 byte-order mark (Excel writes one) dropped, and every problem one line naming
the file, the line, the column or the delimiter where it matters.

What the columns mean is own.py's (labelled texts, numbers) and series.py's (a series).
"""

import codecs
import csv
import io
import re

import numpy as np

from ..errors import first_line
from .core import DataError, is_number
from .rows import large_fields

SNIFF_BYTES = 64 * 1024
MAX_HEADER_BYTES = 16 * 2**20
MAX_COLUMNS = (
    10_000  # time steps of one row, or features: beyond, an RNN's input is absurd
)
DELIMITERS = ",;\t|"
INTEGER = re.compile(r"[+-]?[0-9]+\Z", re.ASCII)


class Table:
    """How a delimited file is laid out: its delimiter and header (None: no header)."""

    def __init__(self, path, delimiter, header):
        self.path, self.delimiter, self.header = path, delimiter, header

    @property
    def delimiter_name(self):
        names = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "bar"}
        return names.get(self.delimiter, repr(self.delimiter))

    def column(self, name, flag):
        """The index of a named column; one line listing the columns if it is missing."""
        if self.header is None or name not in self.header:
            found = ", ".join(self.header or []) or "none: the first row holds numbers"
            raise DataError(
                f"{self.path}: no column {name!r} ({flag}; the columns read with the "
                f"{self.delimiter_name} as delimiter: {found[:300]}); name another with "
                f"{flag}, or give --delimiter"
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
                line = reader.line_num + 1
                raise DataError(
                    f"{self.path}: not UTF-8 text (line {line}: {error.reason})"
                ) from None
            except csv.Error as error:
                raise DataError(
                    f"{self.path}: line {reader.line_num}: {first_line(error)}"
                ) from None

    def check_width(self, fields, line, width):
        if len(fields) != width:
            raise DataError(
                f"{self.path}: line {line} has {len(fields)} fields, the first row "
                f"{width} (read with the {self.delimiter_name} as delimiter)"
            )

    def features(self, layout, named):
        """The feature columns: Layout.features, or every column `named` does not hold,
        less Layout.ignore; said at start-up."""
        for name in (*layout.features, *layout.ignore):
            self.column(
                name,
                "--feature-columns" if name in layout.features else "--ignore-columns",
            )
        chosen = layout.features or [c for c in self.header if c not in named]
        indices = [self.header.index(c) for c in chosen if c not in layout.ignore]
        if not indices:
            raise DataError(
                f"{self.path}: no feature columns beside {', '.join(map(repr, named))}"
            )
        return indices


def open_table(path, delimiter=None):
    """The file's Table: the delimiter as given or sniffed, and the header if the first
    row is not all numbers (read whole, however long)."""
    with open(path, "rb") as stream:
        sample = stream.read(SNIFF_BYTES).removeprefix(codecs.BOM_UTF8)
        first = sample.split(b"\n", 1)[0]
        if b"\n" not in sample:  # a first row longer than the sample
            first = sample + stream.readline(MAX_HEADER_BYTES)
    # the sample may end inside a character
    text = sample.decode("utf-8", errors="ignore")
    if not text.strip():
        raise DataError(f"{path}: the file is empty")
    if "\0" in text:
        raise DataError(f"{path}: holds NUL bytes; not a text file")
    if delimiter is None:
        delimiter = sniff_delimiter(path, text)
    with large_fields():
        try:
            row = first.decode("utf-8", errors="replace")
            first_row = next(csv.reader(io.StringIO(row), delimiter=delimiter), [])
        except csv.Error as error:
            raise DataError(f"{path}: line 1: {first_line(error)}") from None
    if len(first_row) > MAX_COLUMNS + 1:
        raise DataError(
            f"{path}: {len(first_row):,} columns; at most {MAX_COLUMNS:,} are read"
        )
    header = (
        None if all(map(is_number, first_row)) else [name.strip() for name in first_row]
    )
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
    """Integer labels (ASCII digits) as ints, other numbers as floats, anything else as
    text."""
    if all(INTEGER.match(label) for label in labels):
        try:
            return np.array([int(label) for label in labels], dtype=np.int64)
        except OverflowError:
            raise DataError(f"{where}: a label is too large for a class id") from None
    if all(map(is_number, labels)):
        return np.array([float(label) for label in labels], dtype=np.float64)
    return np.array(labels, dtype=str)


def label_of(table, fields, index, line, column):
    label = fields[index].strip()
    if not label:
        raise DataError(f"{table.path}: line {line} has no label (column {column!r})")
    return label
