"""Training and evaluation speed of each script's default model, on synthetic data of the
real shapes, three ways:

- ours:      built, compiled and fed the way common.py does it (`build_and_compile`,
             `ShuffledBatches`, `steps_per_execution`, `EVAL_BATCH_SIZE`);
- baseline:  the tutorial way, `model.fit(x, y, batch_size=64)` on NumPy arrays with a
             default compile, evaluated with the default batch of 32;
- pytorch:   the same network in native PyTorch (where torch is installed).

    python benchmark.py --quick                         # LSTM on TensorFlow, < 3 minutes
    python benchmark.py --backend tensorflow,jax --json runs/benchmark.json
    python benchmark.py --models lstm,simplernn --lever steps_per_execution
    python benchmark.py --models imdb_bilstm --lever mask --steps 6 --rounds 3

Each (backend, model) pair runs in a process of its own: common.py reads --backend before
Keras loads, and the peak memory of a process is then that model's. Within a process the
variants are timed in interleaved rounds (this CPU's speed drifts), and a ratio is the
median of the per-round ratios. Native PyTorch runs in a process of its own too (with
TensorFlow in the same process the two thread pools slow each other down), so ratios
against it compare medians of separate processes. Figures: docs/performance.md.
"""

import argparse
import functools
import importlib
import importlib.metadata
import importlib.util
import inspect
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = {
    "lstm": "train_lstm",
    "gru": "train_gru",
    "bilstm": "train_bilstm",
    "simplernn": "train_simplernn",
    "imdb_bilstm": "train_imdb_bilstm",
}
BACKENDS = ("tensorflow", "jax", "torch")
TRAIN_EXAMPLES = {"mnist": 54000, "imdb": 22500}  # after the 10% validation split
IMDB_VOCAB, IMDB_LENGTH = 20000, 200
IMDB_LEVERS = ("mask", "max_length")  # only with --models imdb_bilstm
LEVERS = ("none", "steps_per_execution", "jit_compile", "eval_batch", "feed")
LEVERS += IMDB_LEVERS
GATES = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------
def comma_list(choices):
    def parse(text):
        items = [item.strip() for item in text.split(",") if item.strip()]
        bad = [item for item in items if item not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)}")
        return items

    return parse


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add(
        "--models",
        type=comma_list(tuple(MODELS)),
        help="default: all (lstm if --quick)",
    )
    add(
        "--backend", type=comma_list(BACKENDS), default=None, help="default: tensorflow"
    )
    add("--batch-size", type=int, default=64, help="training batch size")
    add(
        "--steps",
        type=int,
        help="timed training steps per window (default 20, quick 3)",
    )
    add(
        "--rounds", type=int, help="interleaved rounds per variant (default 3, quick 2)"
    )
    add("--eval-examples", type=int, help="examples per evaluation (default 2048)")
    add("--lever", choices=LEVERS, default="none", help="compare variants of 'ours'")
    add("--no-pytorch", action="store_true", help="skip the native PyTorch comparison")
    add("--json", type=Path, help="write every figure, the hardware and versions here")
    add("--quick", action="store_true", help="a small run that ends within 3 minutes")
    add("--worker", action="store_true", help=argparse.SUPPRESS)
    add("--pytorch-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    fill_defaults(args)
    if args.lever in IMDB_LEVERS and args.models != ["imdb_bilstm"]:
        parser.error(f"--lever {args.lever} needs --models imdb_bilstm")
    return args


def fill_defaults(args):
    quick = args.quick
    args.models = args.models or (["lstm"] if quick else list(MODELS))
    args.backend = args.backend or ["tensorflow"]
    args.steps = args.steps or (3 if quick else 20)
    args.rounds = args.rounds or (2 if quick else 3)
    args.eval_examples = args.eval_examples or (256 if quick else 2048)


# --------------------------------------------------------------------------------------
# Parent: one worker process per (backend, model), then the table and the JSON
# --------------------------------------------------------------------------------------
def main(argv=None):
    args = parse_arguments(argv)
    if args.worker:
        return worker(args)
    started = time.perf_counter()
    results = {}
    for model in args.models:
        for backend in args.backend:
            figures = run_worker(args, backend, model)
            results.setdefault(backend, {})[model] = figures
            print_model(backend, model, figures)
        if wants_pytorch(args):
            figures = run_worker(args, "torch", model, pytorch_only=True)
            results.setdefault("pytorch", {})[model] = figures
            compare_with_pytorch(results, model, figures)
            print_model("native PyTorch", model, figures)
            print_pytorch_ratios(results, model)
    add_machine_peak(results)
    report = {
        "hardware": hardware(),
        "versions": package_versions(),
        "options": options_of(args),
        "results": results,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    print(f"\nwall time {report['wall_seconds']} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    failed = [m for b in results.values() for m in b.values() if "error" in m]
    return 1 if failed and len(failed) == sum(len(b) for b in results.values()) else 0


def add_machine_peak(results):
    """% of the best matrix-product rate any process measured (backends differ)."""
    measured = [m for b in results.values() for m in b.values() if "peak_gflops" in m]
    peak = max((m["peak_gflops"] for m in measured), default=None)
    for figures in measured:
        figures["machine_peak_gflops"] = peak
        for row in figures["variants"].values():
            if "percent_of_peak" in row:
                scale = figures["peak_gflops"] / peak
                row["percent_of_machine_peak"] = row["percent_of_peak"] * scale


def wants_pytorch(args):
    return args.lever == "none" and not args.no_pytorch and importable("torch")


def compare_with_pytorch(results, model, pytorch):
    """PyTorch runs in a process of its own: in one process with TensorFlow, the two
    thread pools slow each other down (LSTM: 92 instead of ~1000 samples/s)."""
    if "error" in pytorch:
        return
    theirs = pytorch["variants"]["pytorch"]
    for backend, models in results.items():
        figures = models.get(model, {})
        if backend == "pytorch" or "error" in figures:
            continue
        ours = figures["variants"]["ours"]
        figures["variants"]["pytorch"] = theirs
        for key, suffix in (
            ("train_samples_per_s", ""),
            ("eval_samples_per_s", " eval"),
        ):
            figures["ratios"]["ours/pytorch" + suffix] = ours[key] / theirs[key]


def worker_command(args, backend, model, out, pytorch_only=False):
    command = [sys.executable, str(Path(__file__).resolve()), "--worker"]
    command += ["--backend", backend, "--models", model, "--json", str(out)]
    command += ["--batch-size", str(args.batch_size), "--steps", str(args.steps)]
    command += [
        "--rounds",
        str(args.rounds),
        "--eval-examples",
        str(args.eval_examples),
    ]
    command += ["--lever", args.lever] + (["--pytorch-only"] if pytorch_only else [])
    return command


def run_worker(args, backend, model, pytorch_only=False):
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "figures.json"
        done = subprocess.run(
            worker_command(args, backend, model, out, pytorch_only),
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
        )
        if done.returncode == 0 and out.is_file():
            return json.loads(out.read_text())
    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
    return {"error": " | ".join(tail) or f"exit code {done.returncode}"}


def print_model(backend, model, figures):
    print(f"\n{model} on {backend}")
    if "error" in figures:
        print(f"  failed: {figures['error']}")
        return
    print(f"  {'variant':12} {'train/s':>9} {'s/epoch':>8} {'eval/s':>9} {'% peak':>7}")
    for name, row in figures["variants"].items():
        train = row.get("train_samples_per_s")
        cells = [
            f"{train:9.0f}" if train else f"{'-':>9}",
            f"{row['epoch_seconds']:8.1f}" if train else f"{'-':>8}",
            f"{row['eval_samples_per_s']:9.0f}",
            f"{row['percent_of_peak']:7.2f}" if train else f"{'-':>7}",
        ]
        print(f"  {name:12} " + " ".join(cells))
    for name, ratio in figures["ratios"].items():
        print(f"  {name:22} {ratio:5.2f}x")
    print(
        f"  peak memory {figures['peak_rss_mib']:.0f} MiB, matmul peak "
        f"{figures['peak_gflops']:.0f} GFLOP/s",
        flush=True,
    )


def print_pytorch_ratios(results, model):
    for backend, models in results.items():
        ratios = models.get(model, {}).get("ratios", {})
        if "ours/pytorch" in ratios:
            train, evaluation = ratios["ours/pytorch"], ratios["ours/pytorch eval"]
            print(
                f"  ours on {backend} / pytorch: {train:.2f}x training, "
                f"{evaluation:.2f}x evaluation (separate processes)"
            )


def hardware():
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "machine": platform.machine(),
        "system": platform.platform(),
    }


def package_versions():
    found = {"python": platform.python_version()}
    for name in ("keras", "tensorflow", "jax", "jaxlib", "torch", "numpy"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def options_of(args):
    keys = (
        "models",
        "backend",
        "batch_size",
        "steps",
        "rounds",
        "eval_examples",
        "lever",
        "quick",
        "no_pytorch",
    )
    return {key: getattr(args, key) for key in keys}


# --------------------------------------------------------------------------------------
# Worker: one backend, one model. common.py (imported with the script) reads --backend
# from sys.argv before Keras loads, so Keras is imported only inside functions.
# --------------------------------------------------------------------------------------
def worker(args):
    (name,) = args.models
    script = importlib.import_module(MODELS[name])
    import common

    task = "imdb" if name.startswith("imdb") else "mnist"
    bench = Bench(common, script.build_model, task, args)
    common.setup_devices(bench.common_args())
    figures = bench.run()
    figures["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    args.json.write_text(json.dumps(figures, indent=2))
    return 0


def synthetic_data(task, count, rng, length=IMDB_LENGTH):
    """MNIST-shaped images, or reviews (lognormal lengths, median ~180 words like IMDB's)
    cut to their first `length` word ids and padded with 0 at the end."""
    import numpy as np

    if task == "mnist":
        x = rng.random((count, 28, 28), dtype=np.float32)
        return x, rng.integers(0, 10, count).astype(np.int32)
    lengths = np.clip(rng.lognormal(5.2, 0.6, count).astype(int), 10, length)
    x = rng.integers(3, IMDB_VOCAB, (count, length)).astype(np.int32)
    x[np.arange(length)[None, :] >= lengths[:, None]] = 0  # right padding
    return x, rng.integers(0, 2, count).astype(np.int32)


def flops_per_sample(model, task, length=None):
    """Forward multiply-adds x2 of the recurrent and dense layers (embedding: none);
    the recurrent layers run over all `length` (padded) steps of a review."""
    from keras import layers

    steps = 28 if task == "mnist" else length or IMDB_LENGTH
    total = 0
    for layer in model.layers:
        inner = (
            layer.forward_layer if isinstance(layer, layers.Bidirectional) else layer
        )
        kind = type(inner).__name__
        inputs = layer.input[0] if isinstance(layer.input, list) else layer.input
        width = inputs.shape[-1]
        if kind in GATES:
            directions = 2 if inner is not layer else 1
            total += (
                steps
                * directions
                * 2
                * GATES[kind]
                * (width + inner.units)
                * inner.units
            )
        elif isinstance(layer, layers.Dense):
            total += 2 * width * layer.units
    return total


class StepTimer:
    """Times the steps between the end of the first compiled call and the last one."""

    def __init__(self, keras):
        timer = self

        class Callback(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if logs and "loss" in logs:
                    float(logs["loss"])  # wait for the step (JAX dispatches ahead)
                timer.marks.append((batch, time.perf_counter()))

        self.callback, self.marks = Callback(), []

    def samples_per_second(self, batch_size):
        (first, start), (last, end) = self.marks[0], self.marks[-1]
        return (last - first) * batch_size / (end - start)


def unmasked(build_model):
    """build_model with the embedding's padding mask off (mask_zero=False)."""
    import keras

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, keras.layers.Embedding):
            config["mask_zero"] = False
        return type(layer).from_config(config)

    @functools.wraps(build_model)  # keeps the signature build_and_compile reads
    def build(**options):
        model = build_model(**options)
        return keras.models.clone_model(model, clone_function=clone)

    return build


class KerasVariant:
    """One compiled Keras model and the way it is fed; `length`: padded review length
    (None: the task's), `eval_data` (None: the bench's)."""

    length, eval_data = None, None

    def __init__(self, bench, model, feed, eval_batch, per_call):
        self.bench, self.model, self.feed = bench, model, feed
        self.eval_batch, self.per_call = eval_batch, per_call

    def train_window(self):
        timer = StepTimer(self.bench.keras)
        self.feed(self.model, timer.callback)
        return timer.samples_per_second(self.bench.args.batch_size)

    def evaluate(self):
        x, y = self.eval_data or self.bench.eval_data
        started = time.perf_counter()
        self.model.evaluate(x, y, batch_size=self.eval_batch, verbose=0)
        return len(x) / (time.perf_counter() - started)


class Bench:
    def __init__(self, common, build_model, task, args):
        import keras
        import numpy as np

        self.common, self.build_model, self.task, self.args = (
            common,
            build_model,
            task,
            args,
        )
        self.keras, self.np = keras, np
        self.eval_data, self.pool = self.data()

    def data(self, length=IMDB_LENGTH):
        """Evaluation data and the pool that training windows are cut from."""
        rng = self.np.random.default_rng(1)
        count = (self.args.steps + 16) * self.args.batch_size * 2
        evaluation = synthetic_data(self.task, self.args.eval_examples, rng, length)
        return evaluation, synthetic_data(self.task, count, rng, length)

    def common_args(self, steps_per_execution=None):
        wanted = inspect.signature(self.build_model).parameters
        defaults = {"epochs": 1, "units": wanted["units"].default}
        argv = ["--batch-size", str(self.args.batch_size)]
        if steps_per_execution:
            argv += ["--steps-per-execution", str(steps_per_execution)]
        return self.common.parse_arguments("benchmark", None, defaults, self.task, argv)

    def window_data(self, per_call, pool=None):
        """Enough batches that the timed part (all calls but the first) is >= --steps."""
        calls = -(-self.args.steps // per_call) + 1
        count = calls * per_call * self.args.batch_size
        x, y = pool or self.pool
        start = self.np.random.default_rng().integers(0, len(x) - count + 1)
        return x[start : start + count], y[start : start + count]

    # ---- the variants -----------------------------------------------------------------
    def ours(
        self, steps_per_execution=None, jit_compile=None, eval_batch=None, arrays=False
    ):
        common_args = self.common_args(steps_per_execution)
        model = self.common.build_and_compile(self.build_model, common_args, self.task)
        if jit_compile is not None:
            model.jit_compile = jit_compile
        per_call = common_args.steps_per_execution
        feed = self.array_feed(per_call) if arrays else self.dataset_feed(per_call)
        eval_batch = eval_batch or self.common.EVAL_BATCH_SIZE
        return KerasVariant(self, model, feed, eval_batch, per_call)

    def imdb(self, mask=True, length=IMDB_LENGTH):
        """Ours for the IMDB model, padding masked or not, reviews cut to `length`."""
        common_args = self.common_args()
        build = self.build_model if mask else unmasked(self.build_model)
        model = self.common.build_and_compile(build, common_args, self.task)
        per_call = common_args.steps_per_execution
        eval_data, pool = self.data(length)
        feed = self.dataset_feed(per_call, pool)
        variant = KerasVariant(self, model, feed, self.common.EVAL_BATCH_SIZE, per_call)
        variant.length, variant.eval_data = length, eval_data
        return variant

    def dataset_feed(self, per_call, pool=None):
        """common.py's way: the ShuffledBatches PyDataset."""
        size = self.args.batch_size

        def feed(model, callback):
            x, y = self.window_data(per_call, pool)
            batches = self.common.ShuffledBatches(x, y, size, 1)
            model.fit(batches, epochs=1, verbose=0, callbacks=[callback])

        return feed

    def array_feed(self, per_call):
        """The same batches in the same order: arrays permuted once, shuffle=False."""
        size = self.args.batch_size

        def feed(model, callback):
            x, y = self.window_data(per_call)
            order = self.np.random.default_rng([1, 0]).permutation(len(x))
            model.fit(
                x[order],
                y[order],
                batch_size=size,
                shuffle=False,
                epochs=1,
                verbose=0,
                callbacks=[callback],
            )

        return feed

    def baseline(self):
        keras = self.keras
        model = self.build_model()
        if self.task == "imdb":
            loss = keras.losses.BinaryCrossentropy(from_logits=True)
        else:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3), loss=loss, metrics=["accuracy"]
        )

        def feed(model, callback):
            x, y = self.window_data(1)
            size = self.args.batch_size
            model.fit(x, y, batch_size=size, epochs=1, verbose=0, callbacks=[callback])

        return KerasVariant(self, model, feed, 32, 1)

    def variants(self):
        lever = self.args.lever
        if lever == "steps_per_execution":
            return {f"spe{n}": self.ours(steps_per_execution=n) for n in (1, 4, 16)}
        if lever == "jit_compile":
            return {"jit_auto": self.ours(), "jit_true": self.ours(jit_compile=True)}
        if lever == "feed":
            return {
                "pydataset": self.ours(),
                "arrays": self.ours(arrays=True),
                "arrays_spe16": self.ours(steps_per_execution=16, arrays=True),
            }
        if lever == "eval_batch":
            return {f"eval{n}": self.ours(eval_batch=n) for n in (32, 256, 1024, 4096)}
        if lever == "mask":
            return {"mask_zero": self.imdb(), "no_mask": self.imdb(mask=False)}
        if lever == "max_length":  # the default first: ratios are against it
            return {f"len{n}": self.imdb(length=n) for n in (200, 100, 400)}
        if self.args.pytorch_only:
            return {"pytorch": TorchVariant(self)}
        return {"ours": self.ours(), "baseline": self.baseline()}

    # ---- measuring --------------------------------------------------------------------
    def run(self):
        variants = self.variants()
        train = self.args.lever != "eval_batch"
        for variant in variants.values():  # warm-up: tracing, compiling, first steps
            if train:
                variant.train_window()
            variant.evaluate()
        rounds = [self.one_round(variants, train) for _ in range(self.args.rounds)]
        return self.figures(variants, rounds)

    def one_round(self, variants, train):
        found = {}
        for name, variant in variants.items():
            found[name] = {"eval": variant.evaluate()}
            if train:
                found[name]["train"] = variant.train_window()
        return found

    def figures(self, variants, rounds):
        peak = matmul_peak(self.keras.backend.backend())
        model = self.build_model()
        flops = flops_per_sample(model, self.task)
        rows = {
            name: self.row(
                name,
                rounds,
                flops_per_sample(model, self.task, getattr(variant, "length", None)),
                peak["peak_gflops"],
            )
            for name, variant in variants.items()
        }
        return {
            "task": self.task,
            "backend": self.keras.backend.backend(),
            "flops_per_sample_train": 3 * flops,
            "flops_per_sample_eval": flops,
            "train_examples_per_epoch": TRAIN_EXAMPLES[self.task],
            "variants": rows,
            "ratios": ratios(rounds, list(variants), self.args.lever != "none"),
            "rounds": rounds,
            **peak,
        }

    def row(self, name, rounds, flops, peak_gflops):
        median = lambda key: statistics.median(
            r[name][key] for r in rounds
        )  # noqa: E731
        row = {"eval_samples_per_s": median("eval")}
        if "train" in rounds[0][name]:
            speed = median("train")
            row["train_samples_per_s"] = speed
            row["epoch_seconds"] = TRAIN_EXAMPLES[self.task] / speed
            row["percent_of_peak"] = 100 * 3 * flops * speed / (peak_gflops * 1e9)
        return row


def ratios(rounds, names, lever):
    """Median over rounds of ours/other, or with a lever of variant/first variant."""
    if len(names) < 2:
        return {}
    key = "train" if "train" in rounds[0][names[0]] else "eval"
    pairs = [(n, names[0]) if lever else (names[0], n) for n in names[1:]]
    found = {}
    for top, bottom in pairs:
        per_round = [r[top][key] / r[bottom][key] for r in rounds]
        found[f"{top}/{bottom}"] = statistics.median(per_round)
        if key == "train":
            per_round = [r[top]["eval"] / r[bottom]["eval"] for r in rounds]
            found[f"{top}/{bottom} eval"] = statistics.median(per_round)
    return found


def importable(name):
    return importlib.util.find_spec(name) is not None


def matmul_peak(backend, size=1024, repeats=5):
    """Best float32 matrix-product rate of NumPy and of the backend, in GFLOP/s."""
    import numpy as np

    a = np.random.default_rng(0).random((size, size), dtype=np.float32)
    rates = {"numpy": best_rate(lambda: a @ a, size, repeats)}
    product = backend_matmul(backend, a)
    if product is not None:
        rates[backend] = best_rate(product, size, repeats)
    return {"matmul_gflops": rates, "peak_gflops": max(rates.values())}


def backend_matmul(backend, a):
    if backend == "tensorflow":
        import tensorflow as tf

        t = tf.constant(a)
        return lambda: tf.matmul(t, t).numpy()
    if backend == "jax":
        import jax.numpy as jnp

        t = jnp.asarray(a)
        return lambda: jnp.dot(t, t).block_until_ready()
    if backend == "torch":
        import torch

        t = torch.from_numpy(a)
        return lambda: torch.mm(t, t)
    return None


def best_rate(product, size, repeats):
    product()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        product()
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


# --------------------------------------------------------------------------------------
# Native PyTorch: the same networks, Adam 1e-3, cross-entropy, the same batches
# --------------------------------------------------------------------------------------
def torch_network(name, units):
    import torch
    from torch import nn

    class Recurrent(nn.Module):
        def __init__(self, kind, bidirectional):
            super().__init__()
            extra = {"nonlinearity": "relu"} if kind is nn.RNN else {}
            self.rnn = kind(
                28,
                units,
                num_layers=2,
                batch_first=True,
                bidirectional=bidirectional,
                **extra,
            )
            self.head = nn.Linear(units * (2 if bidirectional else 1), 10)

        def forward(self, x):
            _, state = self.rnn(x)
            h = state[0] if isinstance(state, tuple) else state
            last = torch.cat([h[-2], h[-1]], 1) if self.rnn.bidirectional else h[-1]
            return self.head(last)

    class Reviews(nn.Module):
        """Embedding (0 = padding) + packed bidirectional LSTM, like mask_zero=True."""

        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(IMDB_VOCAB, 64, padding_idx=0)
            self.rnn = nn.LSTM(64, units, batch_first=True, bidirectional=True)
            self.hidden, self.out = nn.Linear(2 * units, 64), nn.Linear(64, 1)

        def forward(self, x):
            lengths = (x != 0).sum(1).clamp(min=1)
            packed = nn.utils.rnn.pack_padded_sequence(
                self.embedding(x), lengths, batch_first=True, enforce_sorted=False
            )
            _, (h, _) = self.rnn(packed)
            return self.out(
                torch.relu(self.hidden(torch.cat([h[-2], h[-1]], 1)))
            ).squeeze(1)

    if name == "imdb":
        return Reviews()
    kinds = {"lstm": nn.LSTM, "gru": nn.GRU, "simplernn": nn.RNN, "bilstm": nn.LSTM}
    return Recurrent(kinds[name], name == "bilstm")


class TorchVariant:
    def __init__(self, bench):
        import torch

        self.torch, self.bench = torch, bench
        units = inspect.signature(bench.build_model).parameters["units"].default
        name = "imdb" if bench.task == "imdb" else bench.args.models[0]
        self.network = torch_network(name, units)
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=1e-3)
        binary = bench.task == "imdb"
        self.loss = (
            torch.nn.BCEWithLogitsLoss() if binary else torch.nn.CrossEntropyLoss()
        )
        self.label_type = torch.float32 if binary else torch.int64

    def batches(self, x, y, size):
        torch = self.torch
        for start in range(0, len(x), size):
            xb = torch.from_numpy(x[start : start + size])
            yield xb, torch.from_numpy(y[start : start + size]).to(self.label_type)

    def train_window(self):
        x, y = self.bench.window_data(1)
        size = self.bench.args.batch_size
        x, y = x[size:], y[size:]  # as for Keras: --steps timed batches
        self.network.train()
        started = time.perf_counter()
        for xb, yb in self.batches(x, y, size):
            self.optimizer.zero_grad()
            self.loss(self.network(xb), yb).backward()
            self.optimizer.step()
        return len(x) / (time.perf_counter() - started)

    def evaluate(self):
        x, y = self.bench.eval_data
        self.network.eval()
        started = time.perf_counter()
        with self.torch.no_grad():
            for xb, yb in self.batches(x, y, self.bench.common.EVAL_BATCH_SIZE):
                self.loss(self.network(xb), yb).item()
        return len(x) / (time.perf_counter() - started)


if __name__ == "__main__":
    sys.exit(main())
