"""The run folder: one run owns it (a lock), and every file in it is written whole or not
at all.

    args.json        the script and its arguments, so that --resume DIR can repeat them
    training-state/  the last two finished epochs (weights, optimizer, history, counters)
    .lock            exists while a run holds the folder (an flock: freed when killed)

Only one process writes: a RunDir made with writer=False (the other processes of a
multi-process run) reads like any other and writes nothing.
"""

import contextlib
import datetime
import errno
import fcntl
import json
import os
import platform
import shlex
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np

from .errors import TrainingStopped, UsageError, UserError, first_line

MIN_FREE_BYTES = 256 * 2**20
ARGS_FILE, STATE_DIR, METRICS_FILE, LOCK_FILE = (
    "args.json",
    "training-state",
    "metrics.json",
    ".lock",
)
STATES_KEPT = 2
RUN_FILES = {
    ARGS_FILE, STATE_DIR, METRICS_FILE, LOCK_FILE, "logs", "export",
    "preprocessing.json", "vocabulary.json", "word_index.json",
    "model.keras", "best.keras", "history.csv", "predictions.csv",
    "curves.png", "confusion.png", "samples.png", "predictions.png",
}  # fmt: skip


def run_file(name):
    """Whether a run writes a file of this name (or its partial file, a process lock)."""
    base = name.replace(".partial", "")
    return base in RUN_FILES or (name.startswith(".process-") and name.endswith(".lock"))


class DamagedState(Exception):
    """A saved epoch that cannot be read back."""


class RunDir:
    def __init__(self, path, writer=True):
        self.path, self.writer = Path(path), writer
        self._lock, self.created, self.written, self.made = None, False, set(), []
        self.temporary = False  # a --smoke run's folder, removed when run() returns

    @classmethod
    def new(cls, script, parent=Path("runs")):
        """runs/SCRIPT-TIME, made here and now: two runs started in the same second get
        different folders (mkdir fails for the second, which takes the next name)."""
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        for number in range(1, 1000):
            suffix = "" if number == 1 else f"-{number}"
            path = parent / f"{script}-{stamp}{suffix}"
            try:
                run_dir = cls(path)
                run_dir.make_folder()
                return run_dir
            except FileExistsError:
                continue
            except OSError as error:
                raise UserError(
                    f"cannot create {path}: {error.strerror or error}"
                ) from None
        raise UserError(f"cannot find a free folder name under {parent}")

    def __str__(self):
        return str(self.path)

    def make_folder(self):
        """mkdir -p, remembering the folders made (a refused start removes them)."""
        missing = [p for p in (self.path, *self.path.parents) if not p.exists()]
        self.path.mkdir(parents=True)
        self.created, self.made = True, missing

    # ---- ownership ----------------------------------------------------------------
    def claim(self, overwrite, command, script, extending=False):
        """Lock the folder for this run; refuse another script's run, a finished run
        unless overwrite (then clear it) or extending (--resume), and --overwrite on a
        folder that holds no run (it would delete what is not the pipeline's)."""
        self._take_lock(command)
        check_free_space(self.path, MIN_FREE_BYTES)
        owner = self.owner()
        if owner not in (None, script):
            raise UserError(
                f"{self} holds a run of {owner}, not of {script}; resume it with "
                f"python {shlex.quote(owner)} --resume {shlex.quote(str(self.path))}, "
                "or choose another --output-dir"
            )
        if self.is_finished() and not (overwrite or extending):
            raise UserError(
                f"{self} already holds a finished run; use --overwrite to replace it or "
                "choose another --output-dir"
            )
        if overwrite and owner is None and self.foreign():
            raise UserError(
                f"{self} holds no run but other files ({self.foreign()[0].name}, ...); "
                "--overwrite replaces a run only: choose another --output-dir"
            )
        if overwrite:
            self.clear()

    def _take_lock(self, command):
        """An flock on .lock, checked to be the file the path names (a run that ended may
        have unlinked it between our open and our lock)."""
        try:
            if not self.path.is_dir():
                self.make_folder()
        except OSError as error:
            raise UserError(
                f"cannot write to output directory {self}: {error.strerror or error}"
            ) from None
        for _ in range(100):
            try:
                self._lock = open(self.path / LOCK_FILE, "a+")
            except OSError as error:
                raise UserError(
                    f"cannot write to output directory {self}: {error.strerror or error}"
                ) from None
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = self._lock_holder()
                self._lock.close()
                self._lock = None
                raise UserError(
                    f"{self} is in use by another run ({holder}); wait for it to "
                    "finish or choose another --output-dir"
                ) from None
            if self._lock_is_the_path():
                self._write_holder(command)
                return
            self._lock.close()
        raise UserError(f"{self}: could not lock {LOCK_FILE} (it keeps changing)")

    def _lock_is_the_path(self):
        try:
            return os.path.samestat(
                os.fstat(self._lock.fileno()), os.stat(self.path / LOCK_FILE)
            )
        except OSError:
            return False

    def _lock_holder(self):
        try:
            self._lock.seek(0)
            holder = json.loads(self._lock.read())
            since = f"on {holder['host']} since {holder['started']}"
            return f"pid {holder['pid']} {since}: {holder['command']}"
        except (ValueError, KeyError, TypeError, OSError):
            return "a process that has not said who it is"

    def _write_holder(self, command):
        holder = {
            "pid": os.getpid(),
            "host": platform.node(),
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": command,
        }
        self._lock.seek(0)
        self._lock.truncate()
        self._lock.write(json.dumps(holder))
        self._lock.flush()

    def release(self):
        """Give the folder up: .lock goes (while still held, so no one shares a removed
        file), then closing drops the flock. A killed process's flock drops too."""
        if self._lock is not None:
            with contextlib.suppress(OSError):
                (self.path / LOCK_FILE).unlink()
            self._lock.close()
            self._lock = None

    def abandon(self):
        """The run ends: if it trained no epoch and did not finish (a refused start),
        remove the folder it created, or the files it wrote into a folder it found;
        then release."""
        if self._lock is not None and not self.states() and not self.is_finished():
            if self.created:
                shutil.rmtree(self.path, ignore_errors=True)
                for folder in self.made[1:]:  # runs/ and the like, where left empty
                    with contextlib.suppress(OSError):
                        folder.rmdir()
            for name in self.written:
                with contextlib.suppress(OSError):
                    (self.path / name).unlink()
        self.release()

    def owner(self):
        """The script whose run this folder holds (None: no run yet, or an older
        args.json)."""
        if not (self.path / ARGS_FILE).is_file():
            return None
        return self.saved_arguments().get("script")

    def foreign(self):
        """What the folder holds that no run writes (and --overwrite leaves alone)."""
        return sorted(p for p in self.path.iterdir() if not run_file(p.name))

    def clear(self):
        """Remove the run's own files, and nothing else (the processes' locks stay)."""
        for item in self.path.iterdir():
            if (
                not run_file(item.name)
                or item.name == LOCK_FILE
                or item.name.startswith(".process-")
            ):
                continue
            if item.is_dir() and not item.is_symlink():
                shutil.rmtree(item)
            else:
                item.unlink()

    def read_metrics(self):
        try:
            return json.loads((self.path / METRICS_FILE).read_text())
        except (OSError, ValueError):
            return {}

    def reopen(self):
        """A finished run continues (--resume DIR --epochs N): unfinished until its
        outputs are written again."""
        (self.path / METRICS_FILE).unlink()

    def is_finished(self):
        return (self.path / METRICS_FILE).exists()

    def has_unfinished_run(self):
        return (
            (self.path / ARGS_FILE).exists()
            and bool(self.states())
            and not self.is_finished()
        )

    # ---- arguments ----------------------------------------------------------------
    def saved_arguments(self):
        """args.json: {"arguments": ..., "argv": ..., "changes": [...]}; one line if
        unreadable."""
        path = self.path / ARGS_FILE
        if not path.is_file():
            raise UsageError(f"no run to resume in {self} ({path} is missing)")
        try:
            saved = json.loads(path.read_text())
            if isinstance(saved.get("arguments"), dict):
                return saved
        except (ValueError, OSError, AttributeError):
            pass
        raise UsageError(f"{path} is not a saved argument list")

    def save_arguments(self, script, arguments, argv, changes):
        record = {
            "script": script,
            "argv": argv,
            "arguments": arguments,
            "changes": changes,
        }
        # paths as text
        self.write_text(ARGS_FILE, json.dumps(record, indent=1, default=str))

    # ---- files, each written completely or not at all ------------------------------
    def write_text(self, name, text):
        self.write(name, lambda path: path.write_text(text))

    def write_json(self, name, value):
        self.write_text(name, json.dumps(value, indent=2))

    def write(self, name, write_to):
        """write_to(path) writes the file; it lands under `name` only once complete."""
        if not self.writer:
            return
        final = self.path / name
        partial = final.with_name(f"{final.stem}.partial{final.suffix}")
        try:
            write_to(partial)
            os.replace(partial, final)
            self.written.add(name)
        except BaseException as error:
            partial.unlink(missing_ok=True)
            if isinstance(error, OSError):
                error.filename = str(final)  # the file the user knows, not our .partial
            raise

    def save_model(self, model, name):
        def write_to(path):
            try:
                model.save(path)
            except (OSError, TrainingStopped):
                raise
            except (
                Exception
            ) as error:  # Keras wraps some write errors (zip, h5) in others
                raise OSError(errno.EIO, first_line(error)) from error

        self.write(name, write_to)

    def keep_last_state(self):
        """A finished run keeps its last epoch's state: --resume DIR --epochs N continues
        it."""
        for older in self.states()[1:]:
            older.unlink()

    # ---- training state: the last two finished epochs ------------------------------
    def states(self):
        """Saved epochs, newest first."""
        return sorted(
            (self.path / STATE_DIR).glob("epoch-[0-9][0-9][0-9][0-9].npz"), reverse=True
        )

    def save_state(self, epoch, weights, optimizer_values, meta):
        if not self.writer:
            return
        (self.path / STATE_DIR).mkdir(exist_ok=True)
        name = f"{STATE_DIR}/epoch-{epoch:04d}.npz"
        arrays = {f"weight_{i:04d}": w for i, w in enumerate(weights)}
        arrays.update({f"optimizer_{i:04d}": v for i, v in enumerate(optimizer_values)})
        arrays["meta"] = np.array(json.dumps(meta))

        def write_to(path):
            with open(path, "wb") as stream:
                np.savez(stream, **arrays)
                stream.flush()
                os.fsync(stream.fileno())
            try:
                read_state(path)  # it must read back before it replaces anything
            except DamagedState as damage:
                raise OSError(
                    errno.EIO, f"the file did not read back ({damage})"
                ) from damage

        self.write(name, write_to)
        for older in self.states()[STATES_KEPT:]:
            older.unlink()

    def latest_epoch(self):
        states = self.states()
        return int(states[0].stem.split("-")[1]) if states else 0

    def resume_hint(self, script):
        epochs = self.latest_epoch() if self.path.is_dir() else 0
        if not epochs:
            return "no epoch had finished, nothing to resume"
        return (
            f"{epochs} finished epoch(s) kept; resume with: "
            f"python {shlex.quote(script)} --resume {shlex.quote(str(self.path))}"
        )


def read_state(path):
    """(weights, optimizer values, meta) of a saved epoch; DamagedState if unreadable."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise DamagedState(f"{type(error).__name__}: {error}") from None
    weights = [arrays[k] for k in sorted(arrays) if k.startswith("weight_")]
    optimizer_values = [arrays[k] for k in sorted(arrays) if k.startswith("optimizer_")]
    return weights, optimizer_values, meta


def check_free_space(path, needed_bytes):
    free = shutil.disk_usage(path).free
    if free < needed_bytes:
        raise UserError(
            f"only {free / 2**20:.0f} MiB free in {path}; "
            f"checkpoints need about {needed_bytes / 2**20:.0f} MiB"
        )


def script_command(argv):
    return " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name, *argv])
