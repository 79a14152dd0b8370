"""Write a corpus of hostile files: inputs that broke earlier versions (tracebacks, wrong
diagnoses, gigabytes of memory for a few bytes of file). tests/test_hostile.py runs every
script and predict.py against each and expects one line naming the file and exit code 1.

    python tools/hostile_files.py DIR      # write them into DIR (made if missing)

To add one: write a function `name(path)` that creates the file (or folder) at `path`,
and add a Hostile row to FILES: the file's name, the function, who reads it ("sequences"
and "text": the scripts of that kind with --data; "predict": predict.py on an image run),
the words the one-line refusal must contain, any extra command-line flags, and whether it
may allocate a lot of memory (then the test runs it in a subprocess under a memory
limit).
"""

import csv
import gzip
import io
import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Hostile:
    name: str
    write: object
    reads: str  # "sequences", "text" or "predict"
    words: str
    flags: tuple = ()
    memory: bool = False
    option: str = "--data"  # how a script is given the file


def npz(path, **arrays):
    np.savez(path, **arrays)


def sequences(count=12):
    return np.random.default_rng(0).normal(size=(count, 5, 2)).astype(np.float32)


def huge_label(path):  # a class id of 2^62 once made class names for every id below it
    npz(path, x_train=sequences(), y_train=np.array([0, 1] * 5 + [1, 2**62]))


def far_label(path):  # a class id of 999999 once made a 7.28 TiB confusion matrix
    npz(path, x_train=sequences(), y_train=np.array([0, 1] * 5 + [1, 999_999]))


def lying_header(path):  # the header claims 10^12 rows; the archive holds 12
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 5, 2)}
    )
    labels = io.BytesIO()
    np.save(labels, np.arange(12) % 2)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x_train.npy", header.getvalue() + sequences().tobytes())
        archive.writestr("y_train.npy", labels.getvalue())


def zip_bomb(path):  # 1.25 GiB of zeros in a few megabytes
    with zipfile.ZipFile(
        path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1
    ) as archive:
        with archive.open("x_train.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(
                member, {"descr": "<f4", "fortran_order": False, "shape": (2**25, 5, 2)}
            )
            block = bytes(1 << 24)
            for _ in range(2**25 * 40 // (1 << 24)):
                member.write(block)
        labels = io.BytesIO()
        np.save(labels, np.arange(2**25) % 2)
        archive.writestr("y_train.npy", labels.getvalue())


def no_steps(path):
    npz(path, x_train=np.zeros((12, 0, 2), np.float32), y_train=np.arange(12) % 2)


def overflowing(path):  # 1e300 passes a finite check and becomes inf in float32
    npz(path, x_train=np.full((12, 5, 2), 1e300), y_train=np.arange(12) % 2)


def nan_values(path):
    npz(path, x_train=np.full((12, 5, 2), np.nan), y_train=np.arange(12) % 2)


def text_named_npz(path):
    path.write_text("a text file, named like an archive\n")


def folder_named_npz(path):
    path.mkdir()


def pipe_named_npz(path):
    os.mkfifo(path)


def word_id_2_40(path):  # once reported as "out of memory" (an Embedding of 2^40 rows)
    npz(path, x_train=np.array([[1, 2, 2**40]] * 12), y_train=np.arange(12) % 2)


def table(path, rows, encoding="utf-8", bom=False):
    with open(path, "w", newline="", encoding=encoding) as stream:
        if bom:
            stream.write("\ufeff")
        csv.writer(stream).writerows(rows)


def empty_texts(path):
    table(path, [["text", "label"], ["", "a"], ["  ", "b"]])


def nul_byte(path):
    path.write_bytes(b"text,label\nhel\0lo,a\nbye,b\n")


def negative_label(path):  # "-1" once became a class name silently
    table(path, [["text", "label"], ["hello", "-1"], ["bye", "0"], ["yes", "1"]])


def duplicate_column(path):  # once reported as "row 2 has no label"
    table(path, [["text", "label", "label"], ["hello", "a", "b"], ["bye", "b", "a"]])


def not_utf8(path):
    path.write_bytes(b"text,label\ncaf\xe9,a\nbye,b\n")


def semicolons(path):  # once "no column 'text'" without saying which delimiter was read
    table(path, [["words;label"], ["hello;a"], ["bye;b"]])


def ragged_sequences(path):
    table(
        path,
        [
            ["sequence", "label", "x"],
            ["s1", "a", "1"],
            ["s1", "a", "2"],
            ["s2", "b", "3"],
        ],
    )


def empty_class(path):
    for name in ("pos", "neg"):
        (path / name).mkdir(parents=True)
    (path / "pos" / "1.txt").write_text("good")


def text_target(path):
    table(path, [["when", "value"]] + [[f"day {i}", str(i)] for i in range(40)])


def huge_png(path):  # 873 kB that once decoded into 14.8 GB
    import matplotlib.pyplot as plt

    small = io.BytesIO()
    plt.imsave(small, np.zeros((4, 4)), format="png")
    head = bytearray(small.getvalue())
    head[16:24] = (30000).to_bytes(4, "big") * 2  # IHDR: width and height
    path.write_bytes(bytes(head))


def not_png(path):
    path.write_bytes(b"\x89PNG\r\n\x1a\nnothing more")


def nan_array(path):
    np.save(path, np.full((28, 28), np.nan))


def no_examples(path):
    np.save(path, np.zeros((0, 28, 28)))


def object_array(path):
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)


def pipe_in_folder(path):  # a FIFO named *.txt once hung the run, deaf to SIGTERM
    for name in ("pos", "neg"):
        (path / name).mkdir(parents=True)
        (path / name / "1.txt").write_text(f"a {name} review")
    os.mkfifo(path / "neg" / "2.txt")


def sparse_text(path):  # a sparse 2 GiB .txt once took a MemoryError from the data feed
    for name in ("pos", "neg"):
        (path / name).mkdir(parents=True)
        (path / name / "1.txt").write_text(f"a {name} review")
    with open(path / "pos" / "huge.txt", "wb") as stream:
        stream.truncate(2**31)


def many_columns(path):  # 1M columns once aborted in C++ (3.9 GB)
    row = ",".join(["label"] + [f"c{i}" for i in range(1_000_000)])
    path.write_text(row + "\n" + ",".join(["1"] + ["0"] * 1_000_000) + "\n")


def empty_label(path):  # an empty label once became a class ''
    table(
        path,
        [
            ["label", "x1", "x2"],
            ["1", "0.5", "0.1"],
            ["", "0.3", "0.2"],
            ["0", "1", "2"],
        ],
    )


def no_steps_array(path):  # (2, 0, 28) once took a traceback from the model
    np.save(path, np.zeros((2, 0, 28)))


def huge_values(path):  # 1e300 once printed nan with exit 0
    np.save(path, np.full((28, 28), 1e300))


def fashion_huge_header(path):  # --data-dir with an idx header of 2^31 images
    path.mkdir()
    for name, dims in (
        ("train-images-idx3-ubyte.gz", 3),
        ("train-labels-idx1-ubyte.gz", 1),
        ("t10k-images-idx3-ubyte.gz", 3),
        ("t10k-labels-idx1-ubyte.gz", 1),
    ):
        shape = [2**31, 28, 28][:dims] if dims == 3 else [2**31]
        header = np.array([2049 if dims == 1 else 2051, *shape], ">u4")
        with gzip.open(path / name, "wb") as stream:
            stream.write(header.tobytes() + bytes(100))


FILES = [
    Hostile(
        "huge-label.npz",
        huge_label,
        "sequences",
        "distinct labels, the largest 4611686018427387904",
        memory=True,
    ),
    Hostile(
        "far-label.npz", far_label, "sequences", "distinct labels, the largest 999999"
    ),
    Hostile("lying-header.npz", lying_header, "sequences", "header says", memory=True),
    Hostile("zip-bomb.npz", zip_bomb, "sequences", "refused as a zip bomb", memory=True),
    Hostile("no-steps.npz", no_steps, "sequences", "hold no values"),
    Hostile(
        "overflowing.npz",
        overflowing,
        "sequences",
        "beyond what float32 training handles",
    ),
    Hostile("nan.npz", nan_values, "sequences", "holds NaN or infinite values"),
    Hostile("text.npz", text_named_npz, "sequences", "not an .npz file"),
    Hostile("folder.npz", folder_named_npz, "sequences", "is a folder"),
    Hostile("pipe.npz", pipe_named_npz, "sequences", "not a regular file"),
    Hostile("word-id.npz", word_id_2_40, "text", "word ids must lie in 0..999999"),
    Hostile(
        "empty-texts.csv", empty_texts, "text", "every text in column 'text' is empty"
    ),
    Hostile("nul.csv", nul_byte, "text", "NUL bytes"),
    Hostile("negative-label.csv", negative_label, "text", "class ids must be 0, 1, 2"),
    Hostile(
        "duplicate-column.csv",
        duplicate_column,
        "text",
        "names the column 'label' twice",
    ),
    Hostile("latin1.csv", not_utf8, "text", "not UTF-8"),
    Hostile("semicolons.csv", semicolons, "text", "semicolon as delimiter"),
    Hostile(
        "ragged.csv",
        ragged_sequences,
        "sequences",
        "every sequence needs the same number of time steps",
    ),
    Hostile("empty-class", empty_class, "text", "no .txt files"),
    Hostile(
        "text-target.csv",
        text_target,
        "sequences",
        "the --target column 'when' holds text",
        ("--target", "when"),
    ),
    Hostile(
        "window.csv",
        text_target,
        "sequences",
        "too few for --window 100",
        ("--target", "value", "--window", "100"),
    ),
    Hostile(
        "fashion-header",
        fashion_huge_header,
        "sequences",
        "far beyond Fashion-MNIST",
        ("--dataset", "fashion_mnist"),
        True,
        "--data-dir",
    ),
    Hostile(
        "fifo-folder",
        pipe_in_folder,
        "text",
        "is not a regular file (a pipe or a device?)",
    ),
    Hostile(
        "sparse-folder",
        sparse_text,
        "text",
        "a text may hold at most 16 MiB",
        memory=True,
    ),
    Hostile(
        "many-columns.csv",
        many_columns,
        "sequences",
        "1,000,001 columns; at most",
        memory=True,
    ),
    Hostile(
        "empty-label.csv",
        empty_label,
        "sequences",
        "line 3 has no label (column 'label')",
    ),
    Hostile("huge.png", huge_png, "predict", "30000x30000 pixels", memory=True),
    Hostile("no-steps.npy", no_steps_array, "predict", "hold no values"),
    Hostile("huge-values.npy", huge_values, "predict", "holds values beyond float32"),
    Hostile("not.png", not_png, "predict", "not a PNG image"),
    Hostile("nan.npy", nan_array, "predict", "holds NaN or infinite values"),
    Hostile("no-examples.npy", no_examples, "predict", "holds no examples"),
    Hostile("object.npy", object_array, "predict", "an object array (a pickle)"),
]


def write_all(folder):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for hostile in FILES:
        if not (folder / hostile.name).exists():
            hostile.write(folder / hostile.name)
    return folder


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: python tools/hostile_files.py DIR")
    folder = write_all(sys.argv[1])
    print(f"wrote {len(FILES)} hostile files into {folder}")


if __name__ == "__main__":
    main()
