"""Processes: one, or several on JAX (--distribute multi-worker), which join before JAX
runs anything and agree at every step where one of them could stop."""

import hashlib
import os
import threading

from .errors import Interrupts, UsageError, UserError, exit_now, first_line

MULTI_WORKER_ON_TENSORFLOW = (
    "--distribute multi-worker runs on the JAX backend: TensorFlow's "
    "MultiWorkerMirroredStrategy fails inside model.fit with Keras 3 (keras-team/keras#20585); "
    "use --backend jax --distribute multi-worker"
)
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

    def differs(self, text):
        """Whether the processes hold different `text` (a collective, like agree)."""
        if self.count == 1:
            return False
        value = int(hashlib.sha256(text.encode()).hexdigest()[:7], 16)
        return self.agree(value) != -self.agree(-value)

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


def join_cluster(config):
    """--distribute multi-worker: connect to the other processes before JAX runs anything
    (it refuses afterwards). Flags left out are read by JAX from the cluster (SLURM, Open
    MPI); JAX's own 5-minute wait ends in an abort, so a timer says why in one line first."""
    if config.distribute != "multi-worker":
        return Cluster()
    if config.backend != "jax":
        raise UserError(MULTI_WORKER_ON_TENSORFLOW)
    import jax

    jax.config.update("jax_enable_preemption_service", False)  # it would take SIGTERM
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    timeout = int(os.environ.get(JOIN_TIMEOUT_ENV, JOIN_TIMEOUT))
    timer = threading.Timer(timeout, give_up_joining, (config, timeout))
    timer.daemon = True
    timer.start()
    try:
        jax.distributed.initialize(
            config.coordinator, config.num_processes, config.process_id,
            initialization_timeout=timeout + 30, heartbeat_timeout_seconds=HEARTBEAT_SECONDS,
        )  # fmt: skip
    except ValueError as error:  # no flags, and no cluster that JAX recognises
        raise UsageError(
            "--distribute multi-worker needs --coordinator, --num-processes and "
            f"--process-id, or a cluster JAX detects such as SLURM ({first_line(error)})"
        )
    finally:
        timer.cancel()
    Interrupts.take_signals()  # ours again, whatever JAX set up
    return Cluster(jax.process_index(), jax.process_count())


def give_up_joining(config, timeout):
    where = config.coordinator or "the coordinator"
    who = f"process {config.process_id}" if config.process_id is not None else "this process"
    message = (
        f"error: {who} could not join the others at {where} within {timeout} s; start "
        "every process with the same --coordinator and --num-processes and its own --process-id\n"
    )
    exit_now(1, message)


