"""Training speed with TensorFlow's default threads per op against one thread per op.

Threads are fixed when TensorFlow starts, so each measurement is a process of its own;
the two settings alternate (this CPU's speed drifts) and each prints the samples/s of
four windows of 32 batches of 64 after a warm-up window. Figures: docs/performance.md.

    python tools/thread_lever.py --rounds 2 --scripts train_lstm,train_gru
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def measure(script, threads):
    sys.path.insert(0, str(ROOT))
    import common  # noqa: F401  (quiet TensorFlow start-up)
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    build_model = __import__(script).build_model
    argv = ["--cpu-threads", str(max(threads, 1))]
    defaults = {"epochs": 1, "units": build_model.__defaults__[0]}
    args = common.parse_arguments("t", None, defaults, "mnist", argv)
    model = common.build_and_compile(build_model, args, "mnist")
    rng = np.random.default_rng(0)
    x = rng.random((64 * 32, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, len(x)).astype("int32")
    batches = common.ShuffledBatches(x, y, 64, 1)
    rates = []
    for window in range(5):  # the first is the warm-up
        start = time.perf_counter()
        model.fit(batches, epochs=1, verbose=0, shuffle=False)
        rates.append(len(x) / (time.perf_counter() - start))
    print(statistics.median(rates[1:]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--scripts", default="train_lstm,train_gru,train_bilstm,train_simplernn"
    )
    parser.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        return measure(args.measure[0], int(args.measure[1]))
    for round_number in range(1, args.rounds + 1):
        for script in args.scripts.split(","):
            rates = {}
            for threads in (0, 1):  # 0 = TensorFlow's default
                command = [sys.executable, __file__, "--measure", script, str(threads)]
                done = subprocess.run(
                    command, capture_output=True, text=True, check=True
                )
                rates[threads] = float(done.stdout.split()[-1])
            print(
                f"round {round_number} {script}: default {rates[0]:.0f}, one thread "
                f"{rates[1]:.0f} samples/s, ratio {rates[1] / rates[0]:.2f}x",
                flush=True,
            )


if __name__ == "__main__":
    main()
