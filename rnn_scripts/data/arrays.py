"""Arrays from .npz and .npy files: never unpickled, and checked before they are
allocated.

An .npz is a zip of .npy files. Each member's header states its shape and dtype; it is
compared with the member's size in the archive, and the total with the memory at hand,
before NumPy reads anything: a header claiming 10^12 rows or a zip bomb is one line.
"""

import math
import os
import stat
import zipfile

import numpy as np

from .core import DataError

ZIP_MAGIC = b"PK\x03\x04"
BOMB_RATIO, BOMB_BYTES = 200, 2**30  # inflating more than 200-fold to over 1 GiB: a bomb


def memory_limit():
    """Half the machine's memory: the most one data file may take as arrays."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def check_file(path):
    """A regular file, or one line saying what path is instead."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as error:
        raise DataError(f"{path}: cannot be read ({error.strerror or error})") from None
    if stat.S_ISDIR(mode):
        raise DataError(f"{path}: is a folder, not a file")
    if not stat.S_ISREG(mode):
        raise DataError(
            f"{path}: is not a regular file (a pipe or a device?); save the data to a "
            "file"
        )


def read_npz_arrays(path, names, optional=()):
    """{name: array} of plain (never pickled) arrays of an .npz file; one-line errors."""
    check_file(path)
    with open(path, "rb") as stream:
        if stream.read(4) != ZIP_MAGIC:
            raise DataError(
                f"{path}: not an .npz file (an .npz is a zip archive of .npy arrays)"
            )
    try:
        with zipfile.ZipFile(path) as archive:
            members = {
                info.filename.removesuffix(".npy"): info for info in archive.infolist()
            }
            missing = [n for n in names if n not in members]
            if missing:
                raise DataError(
                    f"{path}: missing arrays {missing}; expected {list(names)}"
                )
            wanted = [n for n in (*names, *optional) if n in members]
            sizes = [member_bytes(archive, members[n], path) for n in wanted]
            if sum(sizes) > memory_limit():
                raise DataError(
                    f"{path}: its arrays take {sum(sizes) / 2**30:.1f} GiB, more than "
                    "half this machine's memory"
                )
        with np.load(path, allow_pickle=False) as archive:
            return {n: archive[n] for n in wanted}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, MemoryError) as error:
        reason = f"{type(error).__name__}: {error}"[:200]
        raise DataError(
            f"{path}: not a readable .npz of plain arrays ({reason})"
        ) from None


def member_bytes(archive, info, path):
    """The bytes an .npz member's array takes, checked against what the archive holds."""
    name = info.filename.removesuffix(".npy")
    with archive.open(info) as member:
        try:
            shape, dtype = array_header(member)
        except ValueError as error:
            raise DataError(
                f"{path}: {name} is not a .npy array ({error})"[:300]
            ) from None
        header = member.tell()
    if dtype.hasobject:
        raise DataError(
            f"{path}: {name} is an object array (a pickle); save plain arrays"
        )
    if info.file_size > BOMB_BYTES and info.file_size > BOMB_RATIO * max(
        1, info.compress_size
    ):
        raise DataError(
            f"{path}: {name} inflates "
            f"{info.file_size // max(1, info.compress_size)}-fold to "
            f"{info.file_size / 2**30:.1f} GiB; refused as a zip bomb"
        )
    size = math.prod(shape) * dtype.itemsize
    if size != info.file_size - header:
        raise DataError(
            f"{path}: {name}'s header says {shape} {dtype} ({size} bytes) but the "
            f"archive holds {info.file_size - header}"
        )
    return size


def array_header(stream):
    """(shape, dtype) from an .npy header, without reading the array."""
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(
            stream, max_header_size=10000
        )
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(
            stream, max_header_size=10000
        )
    return shape, dtype


def read_npy(path):
    """One plain array from an .npy file, its size checked against the file's first."""
    check_file(path)
    try:
        with open(path, "rb") as stream:
            shape, dtype = array_header(stream)
            header = stream.tell()
        if dtype.hasobject:
            raise DataError(f"{path}: an object array (a pickle); save plain numbers")
        if math.prod(shape) * dtype.itemsize != os.path.getsize(path) - header:
            raise DataError(
                f"{path}: its header says {shape} {dtype}, but the file is another size"
            )
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise DataError(
            f"{path}: not a readable .npy of plain numbers ({error})"[:300]
        ) from None
