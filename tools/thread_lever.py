"""Training speed of common.py's pipeline with one thread per TensorFlow op, against the
same pipeline with TensorFlow's default threads and against the tutorial baseline
(`model.fit(x, y, batch_size=64)` on arrays, default compile, default threads).

Threads are fixed when TensorFlow starts, so each measurement is a process of its own;
the variants alternate (this CPU's speed drifts) and each reports the median samples/s of
four windows of 32 batches of 64 after a warm-up window. Figures: docs/performance.md.

    python tools/thread_lever.py --rounds 2 --scripts train_lstm,train_gru
    python tools/thread_lever.py --rounds 1 --variants all   # also feed x steps per call
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


# name: (feed, steps per execution, threads per op); "baseline" is the tutorial recipe.
VARIANTS = {
    "baseline": ("arrays", 1, "default"),
    "default-threads": ("pydataset", 16, "default"),
    "one-thread": ("pydataset", 16, "one"),
    "arrays-16": ("arrays", 16, "default"),
    "pydataset-1": ("pydataset", 1, "default"),
    "baseline-one-thread": ("arrays", 1, "one"),
}
MAIN_VARIANTS = ("baseline", "default-threads", "one-thread")


def measure(script, variant):
    sys.path.insert(0, str(ROOT))
    import common  # first: it quiets TensorFlow start-up
    import keras
    import numpy as np
    import tensorflow as tf

    feed, steps_per_execution, threads = VARIANTS[variant]
    if threads == "one":
        tf.config.threading.set_intra_op_parallelism_threads(1)
    rng = np.random.default_rng(0)
    x = rng.random((64 * 32, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, len(x)).astype("int32")
    build_model = __import__(script).build_model
    if feed == "arrays":  # compiled and fed the tutorial way, shuffled by Keras
        model = build_model()
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
            steps_per_execution=steps_per_execution,
        )
        data, options = x, {"y": y, "batch_size": 64}
    else:  # common.py's own build, compile and feed
        defaults = {"epochs": 1, "units": build_model.__defaults__[0]}
        args = common.parse_arguments("t", None, defaults, "mnist", [])
        args.steps_per_execution = steps_per_execution
        model = common.build_and_compile(build_model, args, "mnist")
        data, options = common.ShuffledBatches(x, y, 64, 1), {"shuffle": False}
    rates = []
    for window in range(5):  # the first is the warm-up
        start = time.perf_counter()
        model.fit(data, epochs=1, verbose=0, **options)
        rates.append(len(x) / (time.perf_counter() - start))
    print(statistics.median(rates[1:]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--scripts", default="train_lstm,train_gru,train_bilstm,train_simplernn"
    )
    parser.add_argument(
        "--variants",
        choices=("main", "all"),
        default="main",
        help="main: " + ", ".join(MAIN_VARIANTS) + "; all: also " + ", ".join(
            v for v in VARIANTS if v not in MAIN_VARIANTS
        ),
    )
    parser.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        return measure(*args.measure)
    variants = MAIN_VARIANTS if args.variants == "main" else tuple(VARIANTS)
    for round_number in range(1, args.rounds + 1):
        for script in args.scripts.split(","):
            rates = {}
            for variant in variants:
                command = [sys.executable, __file__, "--measure", script, variant]
                done = subprocess.run(
                    command, capture_output=True, text=True, check=True
                )
                rates[variant] = float(done.stdout.split()[-1])
            figures = ", ".join(f"{v} {rates[v]:.0f}" for v in variants)
            print(
                f"round {round_number} {script}: {figures} samples/s; one thread / "
                f"default {rates['one-thread'] / rates['default-threads']:.2f}x, ours / "
                f"baseline {rates['one-thread'] / rates['baseline']:.2f}x",
                flush=True,
            )


if __name__ == "__main__":
    main()
