"""Examples read from disk a batch at a time, for data larger than memory.

Each kind holds an index in memory (file names, byte offsets of CSV records, window starts)
and reads the examples themselves only when a batch asks for them, in any order: every
epoch is still a seeded permutation of all rows, so a resumed run trains the batches of an
uninterrupted one. `read(rows)` gives the raw examples of those rows; `take(rows)` a subset.
"""

import contextlib
import csv
import functools
import hashlib
import io
import os
import threading

import numpy as np

from .core import DataError


_FIELD_LIMIT = {"readers": 0, "saved": None, "lock": threading.Lock()}


@contextlib.contextmanager
def large_fields():
    """csv's default field limit is 131,072 characters; a review or article may be longer.
    The limit is global to the process and batches are read in two threads at once: the
    first reader raises it, the last one to finish puts it back."""
    state = _FIELD_LIMIT
    with state["lock"]:
        if state["readers"] == 0:
            state["saved"] = csv.field_size_limit(2**31 - 1)
        state["readers"] += 1
    try:
        yield
    finally:
        with state["lock"]:
            state["readers"] -= 1
            if state["readers"] == 0:
                csv.field_size_limit(state["saved"])


class TextFiles:
    """One text per file (a folder of .txt files per class)."""

    def __init__(self, paths):
        self.paths = np.asarray(paths, dtype=object)

    def __len__(self):
        return len(self.paths)

    def take(self, rows):
        return TextFiles(self.paths[rows])

    def read(self, rows):
        texts = []
        for path in self.paths[rows]:
            try:
                with open(path, "rb") as stream:
                    texts.append(stream.read().decode("utf-8", errors="replace"))
            except OSError as error:
                raise DataError(f"{path}: cannot be read ({error.strerror or error})") from error
        return texts

    def digest_into(self, digest):
        for path in self.paths:
            digest.update(str(path).encode() + b"\0")
            with open(path, "rb") as stream:
                for block in iter(lambda: stream.read(1 << 20), b""):
                    digest.update(block)


class CsvRecords:
    """One column of a delimited file's records; `spans` are each record's byte range."""

    def __init__(self, path, spans, column, delimiter):
        self.path, self.spans, self.column, self.delimiter = path, spans, column, delimiter

    def __len__(self):
        return len(self.spans)

    def take(self, rows):
        return CsvRecords(self.path, self.spans[rows], self.column, self.delimiter)

    def read(self, rows):
        texts = []
        with open(self.path, "rb") as stream, large_fields():
            for start, end in self.spans[rows]:
                stream.seek(start)
                text = stream.read(end - start).decode("utf-8")
                record = next(csv.reader(io.StringIO(text), delimiter=self.delimiter))
                texts.append(record[self.column])
        return texts

    def digest_into(self, digest):
        digest.update(np.ascontiguousarray(self.spans).tobytes())
        stat = os.stat(self.path)
        digest.update(file_digest(self.path, stat.st_size, stat.st_mtime_ns))


@functools.lru_cache(maxsize=8)
def file_digest(path, size, mtime_ns):
    """A file's sha256, read once per process for the splits that share the file (size and
    modification time are part of the key, so a changed file is read again)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.digest()


class Windows:
    """Windows of a series held once in memory: example i is
    series[starts[i] : starts[i] + window], cut out only when a batch asks for it."""

    def __init__(self, series, starts, window):
        self.series, self.starts, self.window = series, np.asarray(starts), window

    def __len__(self):
        return len(self.starts)

    @property
    def shape(self):
        return (len(self.starts), self.window, self.series.shape[1])

    def take(self, rows):
        return Windows(self.series, self.starts[rows], self.window)

    def read(self, rows):
        return self.series[self.starts[rows][:, None] + np.arange(self.window)]

    def digest_into(self, digest):
        digest.update(np.ascontiguousarray(self.series).tobytes())
        digest.update(np.ascontiguousarray(self.starts).tobytes() + str(self.window).encode())
