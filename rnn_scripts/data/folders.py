"""A folder of text files, one sub-folder per class: the layout that
keras.utils.text_dataset_from_directory reads (class folders sorted by name, the .txt
files in each, sorted, sub-folders included), and the raw IMDB archive's:

    aclImdb/train/pos/*.txt, aclImdb/train/neg/*.txt, aclImdb/train/unsup/*.txt
    aclImdb/test/pos/*.txt,  aclImdb/test/neg/*.txt

--data aclImdb (a folder holding train/ and test/) takes both splits. Where a test folder
is known, training folders that are no class of the test folder (aclImdb's unlabelled
"unsup" reviews) are left out, with a line saying so.

The files are listed here rather than by text_dataset_from_directory, whose dataset does
not give the list back: each epoch reads its batches in its own (seed, epoch) order,
which makes a resumed run exact. A test checks the listing against Keras'.
"""

import os
import stat

import numpy as np

from .. import kinds
from ..errors import say
from .core import DataError, Part
from .rows import MAX_TEXT_BYTES, TextFiles


def read_text_folder(path):
    if (path / "train").is_dir() and class_folders(path / "train"):
        parts = {"train": folder_part(path / "train")}
        if (path / "test").is_dir():
            parts["test"] = folder_part(path / "test")
            parts["train"] = only_test_classes(parts["train"], parts["test"])
        return parts
    return {"train": folder_part(path)}


def class_folders(path):
    return sorted(entry.name for entry in os.scandir(path) if entry.is_dir())


def text_files(folder):
    """The .txt files under folder, in text_dataset_from_directory's order; a pipe, a
    device or a text too large to read (a sparse file) is refused before anything is
    read."""
    found = []
    for root, _, files in sorted(os.walk(folder), key=lambda walked: walked[0]):
        for name in sorted(files):
            if name.lower().endswith(".txt"):
                found.append(checked(os.path.join(root, name)))
    return found


def checked(path):
    try:
        status = os.stat(path)
    except OSError as error:
        raise DataError(f"{path}: cannot be read ({error.strerror or error})") from None
    if not stat.S_ISREG(status.st_mode):
        raise DataError(
            f"{path}: is not a regular file (a pipe or a device?); remove it"
        )
    if status.st_size > MAX_TEXT_BYTES:
        size = f"{status.st_size / 2**20:,.0f} MiB"
        raise DataError(
            f"{path}: {size}; a text may hold at most {MAX_TEXT_BYTES // 2**20} MiB"
        )
    return path


def folder_part(path):
    classes = class_folders(path)
    if not classes:
        raise DataError(
            f"{path}: no class folders (expected one sub-folder of .txt files per class)"
        )
    paths, labels = [], []
    for name in classes:
        files = text_files(path / name)
        if not files:
            raise DataError(
                f"{path / name}: no .txt files; every class folder needs some"
            )
        paths += files
        labels += [name] * len(files)
    return Part(TextFiles(paths), np.array(labels, dtype=str), kinds.Texts, str(path))


def only_test_classes(train, test):
    """The training part without the classes the test part does not have."""
    kept = np.isin(train.labels, np.unique(test.labels))
    for name in sorted(set(train.labels[~kept].tolist())):
        say(f"leaving out {train.where}/{name}: the test folder has no class {name!r}")
    if not kept.any():
        raise DataError(
            f"{train.where}: none of its classes is a class of the test folder"
        )
    rows = np.flatnonzero(kept)
    return Part(train.x.take(rows), train.labels[rows], train.kind, train.where)
