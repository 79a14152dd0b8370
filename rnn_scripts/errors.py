"""Exit codes, the errors a user can cause, and SIGINT/SIGTERM from the first line to the last.

Nothing here imports Keras: the signal handlers are installed before it loads.
"""

import os
import signal
import sys

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_SIGINT, EXIT_SIGTERM = 0, 1, 2, 130, 143


class UserError(Exception):
    """A problem the user can fix (a bad file, a folder in use); printed as one line, exit 1."""

    exit_code = EXIT_FAILED


class UsageError(UserError):
    """An argument that cannot be used as given; one line, exit 2 like argparse's errors."""

    exit_code = EXIT_USAGE


class TrainingStopped(Exception):
    """Training ended early on purpose (a signal, a non-finite loss): message and exit code."""

    def __init__(self, message, exit_code):
        super().__init__(message)
        self.exit_code = exit_code


def first_line(error, limit=200):
    """A library's error, cut to one line for our one-line messages."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__


def fail(message, exit_code, hard=False):
    """Print the one line and exit; `hard`: at once, without Python's exit handlers."""
    sys.stdout.flush()
    print(message, file=sys.stderr, flush=True)
    if hard:
        exit_now(exit_code)
    sys.exit(exit_code)


def exit_now(exit_code, message=None):
    """Exit at once, without Python's exit handlers. The message goes to stderr as it was
    when the handlers were installed (os.write: safe in a signal handler or a thread)."""
    sys.stdout.flush()
    if message is not None:
        os.write(Interrupts.stderr, message.encode())
    os._exit(exit_code)


class Interrupts:
    """What SIGINT (Ctrl-C) and SIGTERM do depends on the phase of the run:

    - "exit":   nothing is written yet (Keras loading, arguments): one line, exit at once.
    - "raise":  setting up (data, model): stop with TrainingStopped where we are.
    - "defer":  training or writing files: remembered, and the run stops at the next safe
                point (`check`), so no file is left half-written. A second signal stops at
                once. Raising inside a library can land in its garbage-collection hooks,
                where the exception is swallowed; the remembered signal still stops the run.
    - "ignore": every output is written: the run has finished, exit 0.
    """

    MEANING = {
        signal.SIGINT: ("interrupted (Ctrl-C)", EXIT_SIGINT),
        signal.SIGTERM: ("terminated (SIGTERM)", EXIT_SIGTERM),
    }
    mode, pending, stderr = "exit", None, 2

    @classmethod
    def install(cls):
        cls.stderr = os.dup(2)  # stderr as it is now: TensorFlow's import silences fd 2
        for signum in cls.MEANING:  # SIGINT too, even if the parent shell ignores it
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
        """Every output is written: from now on a signal changes nothing. SIG_IGN rather than
        a Python handler, since Python restores the default handlers at exit."""
        cls.mode = "ignore"
        for signum in cls.MEANING:
            signal.signal(signum, signal.SIG_IGN)

    @classmethod
    def check(cls, signalled=None):
        """Stop here if a signal arrived since the last safe point; `signalled`: the signal
        every process of a multi-process run agreed on (a local one may arrive meanwhile
        and waits for the next agreement)."""
        signum = cls.pending if signalled is None else signalled
        if signum:
            raise TrainingStopped(*cls.MEANING[signum])
