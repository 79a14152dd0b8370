"""Exit codes, the errors a user can cause, and what a signal does in each phase of a
run.

Nothing here imports Keras, and importing it changes nothing: `Interrupts.installed()`
sets the handlers for the length of a run and puts the previous ones back.
"""

import contextlib
import os
import signal
import sys
import threading

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_SIGHUP, EXIT_SIGINT, EXIT_SIGTERM = 129, 130, 143


class UserError(Exception):
    """A problem the user can fix (a bad file, a folder in use); printed as one line,
    exit 1."""

    exit_code = EXIT_FAILED


class UsageError(UserError):
    """An argument that cannot be used as given; one line, exit 2 as argparse's."""

    exit_code = EXIT_USAGE


class InputError(UserError, ValueError):
    """An input that does not fit the run (TrainedRun.predict, predict.py): another
    shape, word ids beyond the vocabulary, values that overflow the model. One line."""


class TrainingStopped(Exception):
    """Training ended early on purpose (a signal, a non-finite loss): message and exit
    code."""

    def __init__(self, message, exit_code):
        super().__init__(message)
        self.exit_code = exit_code


def first_line(error, limit=200):
    """A library's error, cut to one line for our one-line messages."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__


def say(message, stream=None):
    """Print one line; a closed or broken stream loses the line, never the run."""
    stream = stream or sys.stdout
    try:
        print(message, file=stream, flush=True)
    except (OSError, ValueError, AttributeError):  # closed, broken pipe, or None
        pass


def fail(message, exit_code, hard=False):
    """Print the one line and exit; `hard`: at once, without Python's exit handlers."""
    flush_or_silence_stdout()
    say(message, sys.stderr)
    if hard:
        exit_now(exit_code)
    sys.exit(exit_code)


def flush_or_silence_stdout():
    """Flush stdout; if its reader is gone (| head), point it at /dev/null, so that
    Python's own flush at exit has nowhere to fail (the recipe of Python's signal
    docs)."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError, AttributeError):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def exit_now(exit_code, message=None):
    """Exit at once, without Python's exit handlers. The message goes to stderr as it was
    when the handlers were installed (os.write: safe in a signal handler or a thread)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        sys.stdout.flush()
    if message is not None:
        with contextlib.suppress(OSError):
            os.write(Interrupts.stderr, message.encode())
    os._exit(exit_code)


class Interrupts:
    """What SIGINT (Ctrl-C), SIGTERM and SIGHUP do depends on the phase of the run:

    - "exit": nothing is written yet (arguments, Keras loading): one line, exit at once.
    - "raise": setting up (data, model): stop with TrainingStopped where we are.
    - "defer": training or writing files: remembered, and the run stops at the next safe
      point (`check`), so no file is left half-written. A second signal stops at once.
      Raising inside a library can land in its garbage-collection hooks, where the
      exception is swallowed; the remembered signal still stops the run.
    - "ignore": every output is written: the run has finished, exit 0.
    """

    MEANING = {
        signal.SIGINT: ("interrupted (Ctrl-C)", EXIT_SIGINT),
        signal.SIGTERM: ("terminated (SIGTERM)", EXIT_SIGTERM),
        signal.SIGHUP: ("hung up (SIGHUP: the terminal closed)", EXIT_SIGHUP),
    }
    mode, pending, stderr = "exit", None, 2

    @classmethod
    @contextlib.contextmanager
    def installed(cls):
        """Our handlers inside the block (SIGINT too, even if the parent shell ignores
        it); the previous handlers, mode and stderr copy afterwards, however the block
        ends."""
        main_thread = threading.current_thread() is threading.main_thread()
        saved = {s: signal.getsignal(s) for s in cls.MEANING} if main_thread else {}
        saved_state = (cls.mode, cls.pending, cls.stderr, sys.unraisablehook)
        cls.mode, cls.pending, cls.stderr = "exit", None, os.dup(2)
        sys.unraisablehook = cls.quiet_when_swallowed
        try:
            if main_thread:  # Python lets only the main thread set handlers
                cls.take_signals()
            yield cls
        finally:
            sys.unraisablehook = saved_state[3]
            for signum, handler in saved.items():
                signal.signal(signum, handler)
            os.close(cls.stderr)
            cls.mode, cls.pending, cls.stderr = saved_state[:3]

    @staticmethod
    def quiet_when_swallowed(unraisable):
        """A stop raised inside a library's garbage-collection hook is swallowed there
        ("Exception ignored in ..."); the pending signal stops the run anyway, so say
        nothing."""
        if not isinstance(unraisable.exc_value, TrainingStopped):
            sys.__unraisablehook__(unraisable)

    @classmethod
    def take_signals(cls):
        """(Re)install our handlers, e.g. after a library set its own."""
        for signum in cls.MEANING:
            signal.signal(signum, cls.handle)

    @classmethod
    def handle(cls, signum, frame):
        if cls.mode == "ignore":
            return
        words, code = cls.MEANING[signum]
        if cls.mode == "exit":
            exit_now(code, f"{words} before training started; nothing was written\n")
        first = cls.pending is None
        cls.pending = cls.pending or signum
        if cls.mode == "raise" or not first:
            raise TrainingStopped(words, code)

    @classmethod
    def finished(cls):
        """Every output is written: from now on a signal changes nothing."""
        cls.mode = "ignore"

    @classmethod
    def check(cls, signalled=None):
        """Stop here if a signal arrived since the last safe point; `signalled`: the
        signal every process of a multi-process run agreed on (a local one may arrive
        meanwhile and waits for the next agreement)."""
        signum = cls.pending if signalled is None else signalled
        if signum:
            raise TrainingStopped(*cls.MEANING[signum])
