"""Devices: set up before any layer exists, described in one line, and the distributions
(one device; mirrored over this machine's devices; several processes on JAX,
cluster.py)."""

import contextlib
import importlib.util
import os
import platform

import keras
import numpy as np

from .cli import SINGLE_THREAD_MAX_CORES
from .environment import CPU_DEVICES_ENV
from .errors import UserError
from .feed import EVAL_BATCH_SIZE


def setup_devices(config):
    """Call before any layer exists: GPU memory growth must be set before the runtime
    starts."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        configure_tensorflow(config)
    elif backend == "torch" and config.deterministic:
        import torch

        torch.use_deterministic_algorithms(True)
    if backend != "tensorflow" and not gpu_names(backend):
        keep_freed_memory()
    keras.utils.set_random_seed(config.seed)
    if config.mixed_precision != "off":
        keras.mixed_precision.set_global_policy(f"mixed_{config.mixed_precision}")
    if config.use_cudnn == "true" and not gpu_names(backend):
        raise UserError(
            "--use-cudnn true needs an NVIDIA GPU with cuDNN and this run sees "
            f"none ({backend} backend on the CPU); use --use-cudnn auto"
        )
    return describe_devices(backend)


def configure_tensorflow(config):
    import tensorflow as tf

    cpu_devices = int(os.environ.get(CPU_DEVICES_ENV, "0") or 0)
    try:
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
        if cpu_devices > 1:
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_devices
            )
        threads = cpu_threads(config.cpu_threads)
        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError as error:  # the runtime was started before us (by the caller)
        print(f"warning: could not configure devices before start-up: {error}")
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()


def keep_freed_memory():
    """glibc hands large freed blocks back to the system at once, so every training step
    maps its tensors' memory again and page-faults on it. Keeping freed memory (up to
    1 GiB) in the process makes torch and JAX faster on the CPU (docs/performance.md).
    Nothing changes where the C library is not glibc."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
    return bool(
        libc.mallopt(M_MMAP_THRESHOLD, 1 << 30)
        and libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
    )


def cpu_threads(requested):
    """Threads per TensorFlow op. A recurrent step's products are small, and on few cores
    splitting them costs more than it saves, and 1 thread is faster there
    (docs/performance.md). Elsewhere TensorFlow's own choice stands (None)."""
    if requested:
        return requested
    return 1 if (os.cpu_count() or 1) <= SINGLE_THREAD_MAX_CORES else None


def backend_settings():
    """What the backend reports about the settings made here, for metrics.json."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf
        from tensorflow.python.framework import config  # the only place TF reports it

        return {
            "tensorflow_op_determinism": config.is_op_determinism_enabled(),
            "cpu_threads_per_op": tf.config.threading.get_intra_op_parallelism_threads(),
        }
    if backend == "torch":
        import torch

        return {
            "torch_deterministic_algorithms": (
                torch.are_deterministic_algorithms_enabled()
            )
        }
    flags = os.environ.get("XLA_FLAGS", "")
    return {
        "xla_gpu_deterministic_ops": "--xla_gpu_deterministic_ops=true" in flags,
        "jax_gpu_preallocation": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE")
        != "false",
    }


SPEED_TABLE = (
    "cpu-speeds.json"  # written by tools/benchmark.py --speed-table; docs check it
)
CLEARLY_FASTER = 1.2


def measured_speeds():
    """The training samples/s each backend reached with each script's default model on
    the CPU of docs/performance.md: {model name: {"parameters": N,
    "samples_per_second": {...}}}."""
    import importlib.resources
    import json

    try:
        return json.loads(
            (importlib.resources.files("rnn_scripts") / SPEED_TABLE).read_text()
        )["models"]
    except (OSError, ValueError, KeyError, TypeError):  # no table: no note
        return {}


def faster_backend_note(model_name, parameters, backend, device):
    """A line naming a backend that trained this very model (same name and parameter
    count) clearly faster on the CPU of the table, or None. torch's figures are with
    its fused kernels: torch is named only where they would be active here."""
    from . import speedups

    entry = measured_speeds().get(model_name)
    if (
        entry is None
        or entry["parameters"] != parameters
        or not device.startswith("CPU")
    ):
        return None
    speeds = {
        b: s
        for b, s in entry["samples_per_second"].items()
        if b in ("tensorflow", "jax", "torch")
    }
    if not speedups.would_be_active("torch"):
        speeds.pop("torch", None)
    fastest = max(speeds, key=speeds.get)
    if backend not in speeds or speeds[fastest] / speeds[backend] < CLEARLY_FASTER:
        return None
    kernels = " with its fused kernels" if fastest == "torch" else ""
    install = (
        ""
        if importlib.util.find_spec(fastest)
        else f" (pip install -r requirements-{fastest}.txt)"
    )
    return (
        f"note: on a 2-core CPU the {fastest} backend{kernels} trained this model "
        f"{speeds[fastest] / speeds[backend]:.1f}x faster (docs/performance.md): "
        f"--backend {fastest}{install}"
    )


def describe_devices(backend):
    names = gpu_names(backend)
    if not names:
        return f"CPU ({platform.machine()}, {os.cpu_count()} cores)"
    return f"{len(names)} GPU: " + ", ".join(sorted(set(names)))


def gpu_names(backend):
    """The names of the GPUs the backend sees (empty on a CPU-only machine)."""
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return [
            tf.config.experimental.get_device_details(g).get("device_name", g.name)
            for g in gpus
        ]
    if backend == "jax":
        import jax

        return [d.device_kind for d in jax.devices() if d.platform != "cpu"]
    import torch

    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def backend_version(backend):
    return __import__(backend).__version__


# --------------------------------------------------------------------------------------
# Distributions: how many replicas share each batch, and this process's share
# --------------------------------------------------------------------------------------
class SingleDevice:
    replicas = 1

    def __init__(self, cluster):
        self.cluster = cluster

    @property
    def process_index(self):
        return self.cluster.index

    @property
    def process_count(self):
        return self.cluster.count

    def scope(self):
        return contextlib.nullcontext()

    def local_split(self, split):
        """This process's share of a split that all processes evaluate together."""
        share = len(split) // self.process_count
        return split.take(
            np.arange(self.process_index * share, (self.process_index + 1) * share)
        )

    def check_batches(self, batch_size, flag="--batch-size"):
        """Every batch is split over the replicas and must split evenly."""
        for name, size in ((flag, batch_size), ("evaluation batch", EVAL_BATCH_SIZE)):
            if size % self.replicas:
                raise UserError(
                    f"the {name} {size} does not split evenly over {self.replicas} "
                    f"devices; choose a multiple of {self.replicas}"
                )


class TensorFlowMirrored(SingleDevice):
    """tf.distribute.MirroredStrategy over the local GPUs (or the logical CPUs that
    RNN_SCRIPTS_CPU_DEVICES makes): each batch is split over the replicas, gradients
    summed."""

    def __init__(self, cluster):
        import tensorflow as tf

        super().__init__(cluster)
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
        if not devices:
            devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        self.strategy = tf.distribute.MirroredStrategy(devices)
        self.replicas = self.strategy.num_replicas_in_sync

    def scope(self):
        return self.strategy.scope()


class JaxDataParallel(SingleDevice):
    """keras.distribution.DataParallel over every JAX device of every process: weights
    replicated, each batch sharded along its first axis. With several processes each one
    feeds its own share of every batch (auto_shard_dataset off)."""

    def __init__(self, cluster):
        import jax

        super().__init__(cluster)
        devices = jax.devices()
        self.replicas = len(devices)
        distribution = keras.distribution.DataParallel(devices=devices)
        distribution.auto_shard_dataset = cluster.count == 1
        keras.distribution.set_distribution(distribution)


@contextlib.contextmanager
def without_distribution():
    """Work on this process alone (save, predict a copy): under a JAX distribution every
    variable creation is checked across processes, so a save by one process would wait
    for the others forever."""
    if keras.backend.backend() != "jax":
        yield
        return
    current = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(current)


def choose_distribution(config, cluster):
    backend = keras.backend.backend()
    if config.distribute == "none":
        distribution = SingleDevice(cluster)
    elif backend == "tensorflow":
        distribution = TensorFlowMirrored(cluster)
    elif backend == "jax":
        distribution = JaxDataParallel(cluster)
    else:
        raise UserError(
            f"--distribute {config.distribute} is not available on the {backend} "
            "backend; use --backend tensorflow or --backend jax"
        )
    distribution.check_batches(config.batch_size)
    return distribution
