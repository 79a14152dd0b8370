"""What must happen before Keras loads: the backend, quiet TensorFlow, JAX memory.

Keras reads KERAS_BACKEND once, when it is first imported, so run() settles the backend
after parsing the command line (for --resume DIR, from DIR/args.json: a resumed run keeps
its backend whatever the environment says) and before anything imports Keras. A script
that imports Keras at its top anyway (loading it with $KERAS_BACKEND, or TensorFlow) is
started again with the backend asked for. Everything set here is put back when run()
ends.
"""

import contextlib
import os
import sys

from .errors import UsageError

CPU_DEVICES_ENV = (
    "RNN_SCRIPTS_CPU_DEVICES"  # split the CPU into N logical devices (tests)
)
RESTARTED_ENV = "RNN_SCRIPTS_RESTARTED_FOR_BACKEND"


@contextlib.contextmanager
def restored():
    """os.environ and sys.stdout as they were, whatever happens inside; inside, stdout
    never stops the run (see Forgiving)."""
    saved_environment, saved_stdout = dict(os.environ), sys.stdout
    sys.stdout = Forgiving(saved_stdout)
    try:
        yield
    finally:
        sys.stdout = saved_stdout
        os.environ.clear()
        os.environ.update(saved_environment)


class Forgiving:
    """A stream that stops writing, rather than raising, once its reader is gone: a
    closed stdout (python train_gru.py >&-) or a pipe whose reader ended (| head -1)
    must not stop a run that is writing its checkpoints."""

    def __init__(self, stream):
        self.stream, self.gone = stream, stream is None

    def write(self, text):
        if not self.gone:
            try:
                return self.stream.write(text)
            except (OSError, ValueError):  # EPIPE, EBADF, or a closed file object
                self.gone = True
        return len(text)

    def flush(self):
        if not self.gone:
            try:
                self.stream.flush()
            except (OSError, ValueError):
                self.gone = True

    def isatty(self):
        try:
            return not self.gone and self.stream.isatty()
        except (OSError, ValueError):
            return False

    def fileno(self):
        if self.gone:
            raise OSError("stdout is gone")
        return self.stream.fileno()

    def __getattr__(self, name):
        return getattr(self.stream, name)


def prepare(backend, config, as_script):
    """Set what Keras and its backends read at start-up; load Keras with `backend`."""
    start_again_if_keras_differs(backend, as_script)
    os.environ["KERAS_BACKEND"] = backend
    # JAX grabs 75% of GPU memory at start unless told otherwise.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    cpu_devices = os.environ.get(CPU_DEVICES_ENV)
    if backend == "jax" and cpu_devices:
        add_xla_flag(f"--xla_force_host_platform_device_count={int(cpu_devices)}")
    if config.deterministic and backend == "jax":
        add_xla_flag("--xla_gpu_deterministic_ops=true")
    if config.deterministic and backend == "torch":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS asks for it
    if not config.verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        # on JAX and torch too: Keras imports TensorFlow (when present) to save files
        import_tensorflow_quietly()
    try:
        import keras  # noqa: F401  (with the backend set above)
    except ImportError as error:
        raise UsageError(
            f"could not load Keras with the {backend} backend ({error}); install it: "
            "pip install -r "
            f"requirements{'' if backend == 'tensorflow' else '-' + backend}.txt"
        ) from None


def start_again_if_keras_differs(backend, as_script):
    """Keras imported before run() with another backend: start the script again with
    KERAS_BACKEND set (a notebook or a caller gets one line instead)."""
    keras = sys.modules.get("keras")
    if keras is None or keras.backend.backend() == backend:
        return
    loaded = keras.backend.backend()
    if not as_script or os.environ.get(RESTARTED_ENV) == backend:
        raise UsageError(
            f"Keras was loaded with the {loaded} backend before run() and cannot "
            f"switch to {backend}; start Python with KERAS_BACKEND={backend}, or "
            "import Keras inside build_model as the scripts do"
        )
    sys.stdout.flush()
    environment = {**os.environ, "KERAS_BACKEND": backend, RESTARTED_ENV: backend}
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environment)


def add_xla_flag(flag):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()


def import_tensorflow_quietly():
    """TensorFlow's C++ start-up lines reach stderr before any log level applies."""
    if "tensorflow" in sys.modules:
        return
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


def quiet_keras(backend=None, verbose=False):
    """Keras, loaded on `backend` (else $KERAS_BACKEND) without TensorFlow's start-up log
    (predict.py and export.py, which have no run() to do it)."""
    if backend:
        os.environ["KERAS_BACKEND"] = backend
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import_tensorflow_quietly()
    import keras

    return keras
