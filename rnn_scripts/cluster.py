"""Processes: one, or several on JAX (--distribute multi-worker), which join before JAX
runs anything and agree at every step where one of them could stop."""

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import platform
import socket
import sys
import threading
from pathlib import Path

from .errors import Interrupts, UsageError, UserError, exit_now, first_line

MULTI_WORKER_ON_TENSORFLOW = (
    "--distribute multi-worker runs on the JAX backend: TensorFlow's "
    "MultiWorkerMirroredStrategy fails inside model.fit with Keras 3 "
    "(keras-team/keras#20585); use --backend jax --distribute multi-worker"
)
JOIN_TIMEOUT_ENV = "RNN_SCRIPTS_JOIN_TIMEOUT"  # seconds to wait for the other processes
JOIN_TIMEOUT, HEARTBEAT_SECONDS = 300, 60
PER_PROCESS = {
    "process_id",
    "verbose",
    "cpu_threads",
}  # may differ between the processes
PROCESS_LOCK = ".process-{}.lock"


class Cluster:
    """This process's place among the processes of one run (alone: process 0 of 1)."""

    def __init__(self, index=0, count=1, lock=None, created_folder=False):
        self.index, self.count = index, count
        self.lock, self.created_folder = lock, created_folder

    def release(self):
        """Give up this process's id (its lock file goes while still held)."""
        if self.lock is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.lock.name)
            self.lock.close()
            self.lock = None

    @property
    def is_writer(self):
        return self.index == 0

    def agree(self, value):
        """The largest integer any process holds. Every process must call this at the
        same point: it is a collective."""
        if self.count == 1:
            return value
        import numpy as np
        from jax.experimental import multihost_utils

        return int(np.max(multihost_utils.process_allgather(np.int32(value))))

    def differs(self, text):
        """Whether the processes hold different `text` (a collective, like agree)."""
        if self.count == 1:
            return False
        value = int(hashlib.sha256(text.encode()).hexdigest()[:7], 16)
        return self.agree(value) != -self.agree(-value)

    def lost(self):
        """The process this one no longer hears from, where it can tell: with two, the
        other (JAX has no public call that names the lost ones among more)."""
        return [1 - self.index] if self.count == 2 else None


def join_cluster(config):
    """--distribute multi-worker: connect to the other processes before JAX runs anything
    (it refuses afterwards), then check that they were started alike. Flags left out are
    read by JAX from the cluster (SLURM, Open MPI); JAX's own 5-minute wait ends in an
    abort, so a timer says why in one line first. What JAX would answer with an abort or
    a crash (a used port, a duplicate process id) is checked before it starts."""
    if config.distribute != "multi-worker":
        return Cluster()
    if config.backend != "jax":
        raise UserError(MULTI_WORKER_ON_TENSORFLOW)
    import jax

    if config.process_id == 0 and config.coordinator:
        check_port_free(config.coordinator)
    lock, created = claim_process_id(config)
    jax.config.update("jax_enable_preemption_service", False)  # it would take SIGTERM
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    timeout = int(os.environ.get(JOIN_TIMEOUT_ENV, JOIN_TIMEOUT))
    timer = threading.Timer(timeout, give_up_joining, (config, timeout, lock, created))
    timer.daemon = True
    timer.start()
    try:
        jax.distributed.initialize(
            config.coordinator, config.num_processes, config.process_id,
            initialization_timeout=timeout + 30,
            heartbeat_timeout_seconds=HEARTBEAT_SECONDS,
        )  # fmt: skip
    except ValueError as error:  # no flags, and no cluster that JAX recognises
        raise UsageError(
            "--distribute multi-worker needs --coordinator, --num-processes and "
            f"--process-id, or a cluster JAX detects such as SLURM ({first_line(error)})"
        ) from None
    finally:
        timer.cancel()
    Interrupts.take_signals()  # ours again, whatever JAX set up
    cluster = Cluster(jax.process_index(), jax.process_count(), lock, created)
    check_same_arguments(cluster, config)
    return cluster


def check_port_free(coordinator):
    """Process 0's coordinator port must be free: JAX crashes (exit 139) on a used one"""
    port = int(coordinator.rpartition(":")[2])
    for family, anywhere in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            probe = socket.socket(family)
        except OSError:  # no IPv6 here
            continue
        with probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((anywhere, port))
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    raise UsageError(
                        f"--coordinator {coordinator}: port {port} is in use on this "
                        "machine (another run?); give every process another free port"
                    ) from None


def claim_process_id(config):
    """Lock --process-id in the run's folder (shared by every process): JAX aborts with a
    C++ stack on a second process of the same id. (lock file, whether the folder is
    new)."""
    folder = config.resume or config.output_dir
    if config.process_id is None or folder is None:
        return None, False
    folder = Path(folder)
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = open(folder / PROCESS_LOCK.format(config.process_id), "a+")
    except OSError as error:
        raise UserError(
            f"cannot write to output directory {folder}: {error.strerror or error}"
        ) from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.seek(0)
        holder = lock.read().strip() or "a process that has not said who it is"
        lock.close()
        raise UsageError(
            f"--process-id {config.process_id} is taken by another process of this run "
            f"({holder}); give each process its own id"
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"pid {os.getpid()} on {platform.node()}")
    lock.flush()
    return lock, created


def digest(value):
    text = json.dumps(value, sort_keys=True, default=str)
    return int(hashlib.sha256(text.encode()).hexdigest()[:7], 16)


def check_same_arguments(cluster, config):
    """Every process must run the same script with the same arguments (but PER_PROCESS):
    the first difference is named in one line, before a collective could wait forever."""
    import numpy as np
    from jax.experimental import multihost_utils

    names, own = argument_digests(config)
    everyone = np.asarray(multihost_utils.process_allgather(np.array(own, np.int32)))
    different = first_difference(names, everyone)
    if different:
        raise UsageError(
            f"the processes of this run were started with different {different}; start "
            "every process with the same arguments but its own --process-id"
        )


def argument_digests(config):
    """(names, digests): a digest of each pipeline argument that must agree, and a last
    one of the script's name and its model flags."""
    from . import cli

    values, reserved = dict(config.to_json()), cli.reserved_names()
    names = sorted(reserved - PER_PROCESS)
    model = {k: v for k, v in values.items() if k not in reserved}
    script = [os.path.basename(sys.argv[0]), model]
    return names, [digest(values.get(name)) for name in names] + [digest(script)]


def first_difference(names, everyone):
    """The first argument whose digests differ between the processes (rows), or None."""
    for column, name in enumerate([*names, None]):
        if len(set(everyone[:, column].tolist())) > 1:
            return f"--{name.replace('_', '-')}" if name else "scripts or model flags"
    return None


def give_up_joining(config, timeout, lock, created):
    if lock is not None:  # the folder and lock this process made, before exiting at once
        Cluster(lock=lock).release()
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(config.resume or config.output_dir)
    where = config.coordinator or "the coordinator"
    who = (
        f"process {config.process_id}"
        if config.process_id is not None
        else "this process"
    )
    message = (
        f"error: {who} could not join the others at {where} within {timeout} s; start "
        "every process with the same --coordinator and --num-processes and its own "
        "--process-id\n"
    )
    exit_now(1, message)
