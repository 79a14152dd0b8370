"""What must happen before Keras loads: signal handlers, the backend, quiet TensorFlow, JAX memory.

Keras reads KERAS_BACKEND once, when it is first imported, so the backend is settled here
from the command line, or, for --resume DIR, from DIR/args.json (a resumed run keeps its
backend whatever the environment says).
"""

import argparse
import os
import sys
from pathlib import Path

from .cli import BACKENDS
from .errors import EXIT_USAGE, Interrupts, UsageError, fail
from .rundir import RunDir

CPU_DEVICES_ENV = "RNN_SCRIPTS_CPU_DEVICES"  # split the CPU into N logical devices (tests)


def prepare(argv):
    Interrupts.install()
    early = early_options(argv)
    try:
        backend = choose_backend(early)
    except UsageError as error:
        fail(f"{Path(sys.argv[0]).name}: error: {error}", EXIT_USAGE)
    os.environ["KERAS_BACKEND"] = backend
    # JAX grabs 75% of GPU memory at start unless told otherwise.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    cpu_devices = os.environ.get(CPU_DEVICES_ENV)
    if backend == "jax" and cpu_devices:
        add_xla_flag(f"--xla_force_host_platform_device_count={int(cpu_devices)}")
    if early.deterministic and backend == "jax":
        add_xla_flag("--xla_gpu_deterministic_ops=true")
    if early.deterministic and backend == "torch":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS asks for it
    if not early.verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        # on JAX and torch too: Keras imports TensorFlow (when present) to save files
        import_tensorflow_quietly()


def early_options(argv):
    """The few arguments needed before Keras loads; the full parse comes later and reports
    any mistake in them."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--backend")
    parser.add_argument("--resume", type=Path)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--deterministic", action="store_true")
    try:
        early, _ = parser.parse_known_args(argv)
    except SystemExit:  # e.g. --backend without a value: the full parse says so
        early = parser.parse_known_args([])[0]
    if early.resume is not None:
        try:
            saved = RunDir(early.resume).saved_arguments()["arguments"]
            early.saved_backend = saved.get("backend")
            early.deterministic = early.deterministic or saved.get("deterministic", False)
        except UsageError:
            pass
    return early


def choose_backend(early):
    saved = getattr(early, "saved_backend", None)
    if saved in BACKENDS:
        return saved
    if early.backend in BACKENDS:
        return early.backend
    from_environment = os.environ.get("KERAS_BACKEND")
    if from_environment is None:
        return "tensorflow"
    if from_environment not in BACKENDS:
        raise UsageError(
            f"KERAS_BACKEND={from_environment!r} is not one of {', '.join(BACKENDS)}"
        )
    return from_environment


def add_xla_flag(flag):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()


def import_tensorflow_quietly():
    """TensorFlow's C++ start-up lines reach stderr before any log level applies."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow  # noqa: F401
    except ImportError:
        pass  # reported by Keras itself, with the stderr restored
    finally:
        os.dup2(saved, 2)
        os.close(saved)
