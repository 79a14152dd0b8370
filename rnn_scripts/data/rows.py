"""Examples read from disk a batch at a time, for data larger than memory.

Each kind holds an index in memory (file names, byte offsets of CSV records, window
starts) and reads the examples themselves only when a batch asks for them, in any order:
every epoch is still a seeded permutation of all rows, so a resumed run trains the
batches of an uninterrupted one. `read(rows)` gives the raw examples of those rows;
`take(rows)` a subset. Texts are vectorized once, before training, into a scratch file of
word ids (TokenIds): each epoch then reads ids, not texts.
"""

import contextlib
import csv
import functools
import hashlib
import io
import os
import tempfile
import threading

import numpy as np

from .core import DataError

MAX_TEXT_BYTES = 16 * 2**20  # one text: a book is a few MiB; a larger one is refused

_FIELD_LIMIT = {"readers": 0, "saved": None, "lock": threading.Lock()}


@contextlib.contextmanager
def large_fields():
    """csv's default field limit is 131,072 characters; a review or article may be
    longer. The limit is global to the process and batches are read in two threads at
    once: the first reader raises it, the last one to finish puts it back."""
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
                raise DataError(
                    f"{path}: cannot be read ({error.strerror or error})"
                ) from error
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
        self.path, self.spans, self.column, self.delimiter = (
            path,
            spans,
            column,
            delimiter,
        )

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
    """A file's sha256, read once per process for the splits that share the file (size
    and modification time are part of the key, so a changed file is read again)."""
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
        digest.update(
            np.ascontiguousarray(self.starts).tobytes() + str(self.window).encode()
        )


class TokenIds:
    """Texts read from disk, vectorized once into word ids held in an unnamed scratch
    file (gone when the process ends, however it ends); a batch reads its rows back
    with pread. Vectorizing in each batch instead is slower than texts held in memory
    (docs/performance.md); the file is read, not mapped, because mapped
    pages would count as the process's memory."""

    CHUNK = 1024

    def __init__(self, file, length, rows, source):
        self.file, self.length, self.rows, self.source = file, length, rows, source

    @classmethod
    def write(cls, texts, vectorize, length):
        file = tempfile.TemporaryFile(prefix="rnn-scripts-word-ids-")
        try:
            for start in range(0, len(texts), cls.CHUNK):
                ids = vectorize(
                    texts.read(np.arange(start, min(start + cls.CHUNK, len(texts))))
                )
                file.write(np.ascontiguousarray(ids, dtype=np.int32).tobytes())
            file.flush()
        except OSError as error:
            file.close()
            raise DataError(
                f"no room for the texts' word ids in {tempfile.gettempdir()} "
                f"({error.strerror or error}); set TMPDIR to a folder on a disk with "
                "room"
            ) from error
        return cls(file, length, np.arange(len(texts)), texts)

    def __len__(self):
        return len(self.rows)

    @property
    def shape(self):
        return (len(self.rows), self.length)

    def take(self, rows):
        return TokenIds(self.file, self.length, self.rows[rows], self.source)

    def read(self, rows):
        size = self.length * 4
        fd = self.file.fileno()
        data = b"".join(os.pread(fd, size, int(row) * size) for row in self.rows[rows])
        return np.frombuffer(data, dtype=np.int32).reshape(-1, self.length)

    def digest_into(self, digest):
        self.source.take(self.rows).digest_into(digest)
