"""Devices: set up before any layer exists, described in one line, and the distributions
(one device; mirrored over this machine's devices; several processes on JAX)."""

import contextlib
import importlib.util
import os
import platform
import threading

import keras

from . import gru_split
from .cli import SINGLE_THREAD_MAX_CORES
from .environment import CPU_DEVICES_ENV
from .errors import Interrupts, UsageError, UserError, exit_now, first_line

EVAL_BATCH_SIZE = 1024  # measured 1.7x faster evaluation than Keras' 32 (docs/performance.md)


def setup_devices(args):
    """Call before any layer exists: GPU memory growth must be set before the runtime starts."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        configure_tensorflow(args)
    elif backend == "torch":
        configure_torch(args)
    if backend != "tensorflow" and not gpu_names(backend):
        keep_freed_memory()
    keras.utils.set_random_seed(args.seed)
    if args.mixed_precision != "off":
        keras.mixed_precision.set_global_policy(f"mixed_{args.mixed_precision}")
    if args.use_cudnn == "true" and not gpu_names(backend):
        raise UserError(
            "--use-cudnn true needs an NVIDIA GPU with cuDNN and this run sees "
            f"none ({backend} backend on the CPU); use --use-cudnn auto"
        )
    return describe_devices(backend)


def configure_tensorflow(args):
    import tensorflow as tf

    gru_split.install()  # GRU cells split, not slice, their recurrent product (1.2x GRU)
    cpu_devices = int(os.environ.get(CPU_DEVICES_ENV, "0") or 0)
    try:
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
        if cpu_devices > 1:
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_devices
            )
        threads = cpu_threads(args.cpu_threads)
        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError as error:  # the runtime was started before us (by the caller)
        print(f"warning: could not configure devices before start-up: {error}")
    if args.deterministic:
        tf.config.experimental.enable_op_determinism()


def configure_torch(args):
    import torch

    from . import torch_fused

    if args.deterministic:
        torch.use_deterministic_algorithms(True)
    torch_fused.install()  # LSTM/GRU on torch's fused CPU kernels (measured 1.25x-1.9x)


def keep_freed_memory():
    """glibc hands large freed blocks back to the system at once, so every training step
    maps its tensors' memory again and page-faults on it: torch and JAX measured up to
    1.36x faster on the CPU when freed memory (up to 1 GiB) stays in the process
    (docs/performance.md). Nothing changes where the C library is not glibc."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
    return bool(libc.mallopt(M_MMAP_THRESHOLD, 1 << 30) and libc.mallopt(M_TRIM_THRESHOLD, 1 << 30))


def cpu_threads(requested):
    """Threads per TensorFlow op. A recurrent step's products are small, and on few cores
    splitting them costs more than it saves: 1 thread measured 1.1x-1.9x faster on 2 cores
    (docs/performance.md). Elsewhere TensorFlow's own choice stands (None)."""
    if requested:
        return requested
    return 1 if (os.cpu_count() or 1) <= SINGLE_THREAD_MAX_CORES else None


def backend_settings():
    """What the backend reports about the settings made here, for metrics.json."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        from tensorflow.python.framework import config

        return {
            "tensorflow_op_determinism": config.is_op_determinism_enabled(),
            "gru_split_cell": gru_split.installed(),
        }
    if backend == "torch":
        import torch

        from . import torch_fused

        return {
            "torch_deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "torch_fused_cpu_kernels": torch_fused.installed(),
        }
    flags = os.environ.get("XLA_FLAGS", "")
    return {
        "xla_gpu_deterministic_ops": "--xla_gpu_deterministic_ops=true" in flags,
        "jax_gpu_preallocation": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE") != "false",
    }


# Training samples/s of each script's default model (named, with its parameter count) with
# the scripts' defaults on the 2-core CPU of docs/performance.md (tools/benchmark.py, medians
# of 5 rounds), to point a user to a backend that was clearly faster there.
CPU_SAMPLES_PER_SECOND = {
    ("lstm", 819_722): {"tensorflow": 1708, "jax": 1500, "torch": 2438},
    ("gru", 616_970): {"tensorflow": 2620, "jax": 2165, "torch": 1400},
    ("bilstm", 2_163_722): {"tensorflow": 775, "jax": 497, "torch": 1006},
    ("simplernn", 806_922): {"tensorflow": 2161, "jax": 1831, "torch": 1151},
    ("imdb_bilstm", 1_354_369): {"tensorflow": 1069, "jax": 850, "torch": 247},
}
CLEARLY_FASTER = 1.2


def faster_backend_note(model_name, parameters, backend, device):
    """A line naming a backend that trained this very model clearly faster on a CPU, or None
    (also for any other model: the figures hold only for the measured ones)."""
    speeds = CPU_SAMPLES_PER_SECOND.get((model_name, parameters))
    if speeds is None or not device.startswith("CPU"):
        return None
    fastest = max(speeds, key=speeds.get)
    ratio = speeds[fastest] / speeds[backend]
    if ratio < CLEARLY_FASTER:
        return None
    install = "" if importlib.util.find_spec(fastest) else f" (pip install -r requirements-{fastest}.txt)"
    return (
        f"note: on a 2-core CPU the {fastest} backend trained this model {ratio:.1f}x "
        f"faster (docs/performance.md): --backend {fastest}{install}"
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
# Processes: one, or several on JAX (--distribute multi-worker)
# --------------------------------------------------------------------------------------
JOIN_TIMEOUT_ENV = "RNN_SCRIPTS_JOIN_TIMEOUT"  # seconds to wait for the other processes
JOIN_TIMEOUT, HEARTBEAT_SECONDS = 300, 60


class Cluster:
    """This process's place among the processes of one run (alone: process 0 of 1)."""

    def __init__(self, index=0, count=1):
        self.index, self.count = index, count

    @property
    def is_writer(self):
        return self.index == 0

    def agree(self, value):
        """The largest integer any process holds. Every process must call this at the same
        point: it is a collective."""
        if self.count == 1:
            return value
        import numpy as np
        from jax.experimental import multihost_utils

        return int(np.max(multihost_utils.process_allgather(np.int32(value))))

    def lost(self):
        """The processes the coordinator no longer hears from, or None if it cannot tell
        within a few seconds (JAX has no public call for this)."""
        if self.count == 2:
            return [1 - self.index]
        from jax._src import distributed

        alive = {}
        asking = threading.Thread(
            target=lambda: alive.update(distributed.global_state.client.get_live_nodes(list(range(self.count)))),
            daemon=True,
        )
        asking.start()
        asking.join(10)
        return sorted(set(range(self.count)) - set(alive)) if alive else None


def join_cluster(args):
    """--distribute multi-worker: connect to the other processes before JAX runs anything
    (it refuses afterwards). Flags left out are read by JAX from the cluster (SLURM, Open
    MPI); JAX's own 5-minute wait ends in an abort, so a timer says why in one line first."""
    if args.distribute != "multi-worker":
        return Cluster()
    if keras.backend.backend() != "jax":
        raise UserError(MULTI_WORKER_ON_TENSORFLOW)
    import jax

    jax.config.update("jax_enable_preemption_service", False)  # it would take SIGTERM
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    timeout = int(os.environ.get(JOIN_TIMEOUT_ENV, JOIN_TIMEOUT))
    timer = threading.Timer(timeout, give_up_joining, (args, timeout))
    timer.daemon = True
    timer.start()
    try:
        jax.distributed.initialize(
            args.coordinator, args.num_processes, args.process_id,
            initialization_timeout=timeout + 30, heartbeat_timeout_seconds=HEARTBEAT_SECONDS,
        )  # fmt: skip
    except ValueError as error:  # no flags, and no cluster that JAX recognises
        raise UsageError(
            "--distribute multi-worker needs --coordinator, --num-processes and "
            f"--process-id, or a cluster JAX detects such as SLURM ({first_line(error)})"
        )
    finally:
        timer.cancel()
    Interrupts.install()  # ours again, whatever JAX set up
    return Cluster(jax.process_index(), jax.process_count())


def give_up_joining(args, timeout):
    where = args.coordinator or "the coordinator"
    who = f"process {args.process_id}" if args.process_id is not None else "this process"
    message = (
        f"error: {who} could not join the others at {where} within {timeout} s; start "
        "every process with the same --coordinator and --num-processes and its own --process-id\n"
    )
    exit_now(1, message)


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

    def local_rows(self, x, y):
        """This process's share of arrays that all processes evaluate together."""
        share = len(x) // self.process_count
        rows = slice(self.process_index * share, (self.process_index + 1) * share)
        return x[rows], y[rows]

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
    RNN_SCRIPTS_CPU_DEVICES makes): each batch is split over the replicas, gradients summed."""

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


MULTI_WORKER_ON_TENSORFLOW = (
    "--distribute multi-worker runs on the JAX backend: TensorFlow's "
    "MultiWorkerMirroredStrategy fails inside model.fit with Keras 3 (keras-team/keras#20585); "
    "use --backend jax --distribute multi-worker"
)


def choose_distribution(args, cluster):
    backend = keras.backend.backend()
    if args.distribute == "none":
        distribution = SingleDevice(cluster)
    elif backend == "tensorflow":
        distribution = TensorFlowMirrored(cluster)
    elif backend == "jax":
        distribution = JaxDataParallel(cluster)
    else:
        raise UserError(
            f"--distribute {args.distribute} is not available on the {backend} "
            "backend; use --backend tensorflow or --backend jax"
        )
    distribution.check_batches(args.batch_size)
    return distribution
