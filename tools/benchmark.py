"""Training and evaluation speed of each script's default model on generated data of the
real shapes: the scripts' pipeline against the tutorial recipe and native PyTorch.

Variants, each in a process of its own (TensorFlow's threads are fixed when it starts,
and two libraries in one process slow each other down):
  ours      the scripts' pipeline: speedups.install (the split GRU cell on TensorFlow,
            torch's fused CPU kernels), devices.setup_devices (one thread per op on small
            CPUs), training.build and compile_model (16 steps per call where allowed),
            feed.training_feed, the evaluation batch of 1,024
  baseline  the tutorial way: model.fit(x, y, batch_size=64) on arrays, shuffled by
  Keras,
            one step per call, the backend's own threads; evaluate with Keras' batch of
            32
  pytorch   the same network in native PyTorch (torch.nn, torch.optim.Adam)
  ours:KEY=VALUE+KEY=VALUE  ours with levers changed: spe=N, threads=N, feed=pydataset,
            gru=keras (TensorFlow: Keras' own GRU cell, which slices its recurrent
            product), fused=off (torch: no fused kernels), malloc=default (torch, JAX),
            xla=FLAGS (JAX: XLA_FLAGS for the worker, e.g.
            "xla=--xla_cpu_use_thunk_runtime=false"), env=NAME:VALUE;... (environment
            variables for the worker, e.g. "env=OMP_PROC_BIND:true"), eval_batch=N,
            mask=off and max_length=N (IMDB)

Rounds alternate between the processes (ours, baseline, PyTorch, ours, ...), so each
ratio compares the same minutes of this machine; a ratio is the median of the per-round
ratios, with their range. Figures: docs/performance.md.

    python tools/benchmark.py --quick          # the LSTM on TensorFlow, about a minute
    python tools/benchmark.py --backend tensorflow,jax,torch --rounds 5 --json b.json
    python tools/benchmark.py --models lstm --backend torch \
        --variants ours,ours:fused=off
"""

import argparse
import importlib
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the scripts and the rnn_scripts package
MODELS = {
    "lstm": "train_lstm",
    "gru": "train_gru",
    "bilstm": "train_bilstm",
    "simplernn": "train_simplernn",
    "imdb_bilstm": "train_imdb_bilstm",
}
GATES = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}
TRAIN_EXAMPLES = {False: 54000, True: 22500}  # MNIST, IMDB after the validation split


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--models", default=None, help="comma-separated (default: all; lstm if --quick)")
    add("--backend", default="tensorflow", help="comma-separated Keras backends")
    add("--variants", default="ours,baseline", help="comma-separated Keras variants")
    add("--no-pytorch", action="store_true", help="leave out native PyTorch")
    add("--batch-size", type=int, default=64, help="training batch size")
    add("--steps", type=int, help="timed training steps per round (default 24, quick 4)")
    add("--rounds", type=int, help="rounds per variant (default 5, quick 2)")
    add("--eval-examples", type=int, help="examples per evaluation (default 2048)")
    add("--json", type=Path, help="write every figure, the hardware and versions here")
    add(
        "--speed-table",
        type=Path,
        help="write the start-up note's table (rnn_scripts/cpu-speeds.json) here",
    )
    add("--quick", action="store_true", help="a small run (about a minute)")
    add(
        "--worker",
        nargs=3,
        metavar=("BACKEND", "MODEL", "VARIANT"),
        help=argparse.SUPPRESS,
    )
    args = parser.parse_args(argv)
    args.models = (args.models or ("lstm" if args.quick else ",".join(MODELS))).split(
        ","
    )
    args.backend, args.variants = args.backend.split(","), args.variants.split(",")
    args.steps = args.steps or (4 if args.quick else 24)
    args.rounds = args.rounds or (2 if args.quick else 5)
    args.eval_examples = args.eval_examples or (256 if args.quick else 2048)
    for variant in args.variants:
        # a malformed lever stops here, before any worker starts
        lever_environment(variant)
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        parser.error(f"unknown model {unknown[0]}; choose from {', '.join(MODELS)}")
    return args


# --------------------------------------------------------------------------------------
# Parent: start the processes, alternate the rounds, report medians and ranges
# --------------------------------------------------------------------------------------
def main(argv=None):
    args = parse_arguments(argv)
    if args.worker:
        return Worker.serve(args)
    started, results = time.perf_counter(), {}
    peak = matmul_peak()  # here, while no worker runs
    for model in args.models:
        results[model] = measure_model(args, model, peak)
        print_model(model, results[model], args)
    report = {
        "hardware": {**hardware(), "numpy_matmul_peak_gflops": round(peak, 1)},
        "versions": package_versions(),
        "options": {k: v for k, v in vars(args).items() if k not in ("worker", "json")},
        "results": results,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    print(f"\nwall time {report['wall_seconds']} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str))
    if args.speed_table:
        args.speed_table.write_text(
            json.dumps(speed_table(report, argv), indent=1) + "\n"
        )
    return 0


def with_range(figure, rounds):
    return f"{figure:.0f} [{min(rounds):.0f}-{max(rounds):.0f}]"


def speed_table(report, argv):
    """Each default model's training samples/s per backend ("ours") and native torch."""
    models = {}
    for model, figures in report["results"].items():
        speeds, parameters = {}, None
        for name, row in figures["variants"].items():
            backend, _, variant = name.partition(" ")
            if name == "pytorch":
                speeds["pytorch"] = round(row["train"])
            elif variant == "ours":
                speeds[backend], parameters = round(row["train"]), row["parameters"]
        models[model] = {"parameters": parameters, "samples_per_second": speeds}
    command = "python tools/benchmark.py " + " ".join(argv or sys.argv[1:])
    return {
        "measured_with": command,
        "hardware": report["hardware"],
        "versions": report["versions"],
        "models": models,
    }


def measure_model(args, model, peak):
    labels = [(b, v) for b in args.backend for v in args.variants]
    if not args.no_pytorch and importlib.util.find_spec("torch") is not None:
        labels.append(("torch", "pytorch"))
    workers = {
        f"{b} {v}" if v != "pytorch" else "pytorch": Process(args, b, model, v)
        for b, v in labels
    }
    try:
        for worker in workers.values():
            worker.start()  # one at a time: warm-ups do not overlap
        rounds = [
            {name: w.measure() for name, w in workers.items()}
            for _ in range(args.rounds)
        ]
    finally:
        for worker in workers.values():
            worker.stop()
    return summarise(rounds, workers, peak)


class Process:
    """One worker process: warmed up once, then one measurement per round on request."""

    def __init__(self, args, backend, model, variant):
        self.command = [sys.executable, __file__, "--worker", backend, model, variant]
        for flag in ("batch_size", "steps", "eval_examples"):
            self.command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
        # Read when Keras, XLA or OpenMP load, which is after the worker starts.
        self.environment = {
            **os.environ,
            "KERAS_BACKEND": backend,
            **lever_environment(variant),
        }
        self.process, self.info = None, {}

    def start(self):
        self.process = subprocess.Popen(
            self.command, cwd=ROOT, env=self.environment, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.info = self.read()

    def read(self):
        for line in self.process.stdout:
            if line.startswith("@@ "):
                return json.loads(line[3:])
        raise RuntimeError(f"worker {' '.join(self.command[2:6])} ended without figures")

    def measure(self):
        # the last process's thread pools spin down (OpenMP waits ~0.2 s)
        time.sleep(0.5)
        self.process.stdin.write("measure\n")
        self.process.stdin.flush()
        return self.read()

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=120)


def summarise(rounds, workers, peak):
    figures = {}
    for name, worker in workers.items():
        train = [r[name]["train"] for r in rounds]
        evaluation = [r[name]["eval"] for r in rounds]
        figures[name] = {
            **worker.info,
            "train_per_round": train,
            "eval_per_round": evaluation,
        }
        figures[name].update(
            train=statistics.median(train), eval=statistics.median(evaluation)
        )
        figures[name]["percent_of_peak"] = (
            100 * worker.info["train_flops"] * figures[name]["train"] / (peak * 1e9)
        )
    ratios = {}
    for top in workers:
        for bottom in ratio_partners(top, workers):
            for key in ("train", "eval"):
                per_round = [r[top][key] / r[bottom][key] for r in rounds]
                ratios[f"{top} / {bottom} {key}"] = spread(per_round)
    return {"variants": figures, "ratios": ratios}


def ratio_partners(name, workers):
    """ours against the baseline of its backend and against PyTorch; other variants of
    ours against ours."""
    backend, _, variant = name.partition(" ")
    if variant == "ours":
        return [n for n in (f"{backend} baseline", "pytorch") if n in workers]
    if variant.startswith("ours:"):
        return [n for n in (f"{backend} ours",) if n in workers]
    return []


def spread(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def print_model(model, figures, args):
    print(
        f"\n{model}: samples/s, median [min-max] of {args.rounds} rounds, batch "
        f"{args.batch_size}"
    )
    print(f"  {'variant':24} {'train/s':>22} {'eval/s':>22} {'% peak':>7}")
    for name, row in figures["variants"].items():
        train = with_range(row["train"], row["train_per_round"])
        evaluation = with_range(row["eval"], row["eval_per_round"])
        print(f"  {name:24} {train:>22} {evaluation:>22} {row['percent_of_peak']:7.1f}")
    for name, ratio in figures["ratios"].items():
        print(
            f"  {name:44} {ratio['median']:5.2f}x "
            f"[{ratio['min']:.2f}-{ratio['max']:.2f}]"
        )
    sys.stdout.flush()


def hardware():
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
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


# --------------------------------------------------------------------------------------
# Worker: one backend, one model, one variant, on the KERAS_BACKEND its parent sets.
# --------------------------------------------------------------------------------------
class Worker:
    @classmethod
    def serve(cls, args):
        backend, model, variant = args.worker
        worker = (TorchNetwork if variant == "pytorch" else KerasModel)(
            model, variant, args
        )
        worker.train_window()  # warm-up: tracing, compiling, first steps
        worker.evaluate()
        info = {
            "train_flops": 3 * worker.flops,
            "backend": worker.backend(),
            "parameters": worker.parameters(),
        }
        print("@@ " + json.dumps(info), flush=True)
        for _ in sys.stdin:
            figures = {"train": worker.train_window(), "eval": worker.evaluate()}
            print("@@ " + json.dumps(figures), flush=True)
        return 0


def levers(variant):
    """ "ours:spe=4+fused=off" -> {"spe": "4", "fused": "off"}."""
    options = [
        item.split("=", 1) for item in variant.partition(":")[2].split("+") if item
    ]
    if any(len(option) != 2 for option in options):
        raise SystemExit(f"benchmark.py: {variant}: levers take KEY=VALUE+KEY=VALUE")
    return dict(options)


def lever_environment(variant):
    """xla=FLAGS -> XLA_FLAGS; env=NAME:VALUE;NAME:VALUE -> those variables."""
    lever = levers(variant)
    settings = [item.split(":", 1) for item in lever.get("env", "").split(";") if item]
    if any(len(setting) != 2 for setting in settings):
        raise SystemExit(f"benchmark.py: {variant}: env= takes NAME:VALUE;NAME:VALUE")
    environment = {"XLA_FLAGS": lever["xla"]} if "xla" in lever else {}
    return {**environment, **dict(settings)}


class KerasModel:
    def __init__(self, name, variant, args):
        # defines build_model, loads nothing
        script = importlib.import_module(MODELS[name])
        import keras  # with the worker's KERAS_BACKEND

        from rnn_scripts import cli, devices, feed, speedups, training
        from rnn_scripts.contract import read_contract
        from rnn_scripts.pipeline import Hooks

        self.keras, self.training, self.feed, self.args = keras, training, feed, args
        self.baseline, self.levers = variant == "baseline", levers(variant)
        self.tokens = name == "imdb_bilstm"
        contract = read_contract(
            script.build_model,
            "text" if self.tokens else "sequences",
            cli.reserved_names(),
        )
        argv = ["--batch-size", str(args.batch_size)] + self.lever_flags()
        config = cli.parse_arguments(
            "benchmark", None, contract, cli.ScriptDefaults(epochs=1), argv
        )[0]
        if self.levers.get("malloc") == "default":
            devices.keep_freed_memory = lambda: False
        if self.baseline:
            keras.utils.set_random_seed(1)
        else:
            # First, as in the pipeline: TensorFlow's threads are fixed by its first op.
            devices.setup_devices(config)
            speedups.install(config)
        self.apply_speedup_levers()
        self.pool, self.eval_data = synthetic_data(self.tokens, args, self.levers)
        build = (
            unmasked(script.build_model)
            if self.levers.get("mask") == "off"
            else script.build_model
        )
        shape = {
            "features": 28,
            "steps": 28,
            "outputs": 2 if self.tokens else 10,
            "vocab_size": 20000,
        }
        shape["classes"] = shape["outputs"]
        self.model, output = training.build(
            build, contract.model_options(config, shape), classes(shape["outputs"])
        )
        if self.baseline:
            config = config.replace(steps_per_execution=1)
        training.compile_model(self.model, config, output, Hooks(), 1)
        self.per_call = 1 if self.baseline else config.steps_per_execution
        self.eval_batch = (
            32
            if self.baseline
            else int(self.levers.get("eval_batch", feed.EVAL_BATCH_SIZE))
        )
        self.flops = flops_per_sample(name, config.units, self.eval_data[0].shape[1])

    def apply_speedup_levers(self):
        if self.levers.get("gru") == "keras":
            from rnn_scripts.speedups import gru_split

            gru_split.uninstall()
        if self.levers.get("fused") == "off":
            from rnn_scripts.speedups import torch_fused

            torch_fused.uninstall()

    def backend(self):
        return self.keras.backend.backend()

    def parameters(self):
        return self.model.count_params()

    def lever_flags(self):
        flags = []
        if "spe" in self.levers:
            flags += ["--steps-per-execution", self.levers["spe"]]
        if "threads" in self.levers:
            flags += ["--cpu-threads", self.levers["threads"]]
        return flags

    def train_window(self):
        """Samples/s from the end of the first compiled call to the end of the last."""
        calls = -(-self.args.steps // self.per_call) + 1
        x, y = window(self.pool, calls * self.per_call * self.args.batch_size)
        timer = StepTimer(self.keras)
        size = self.args.batch_size
        if self.baseline:
            self.model.fit(
                x, y, batch_size=size, epochs=1, verbose=0, callbacks=[timer.callback]
            )
        else:
            from rnn_scripts.data import Split

            order = self.feed.EpochOrder(len(x), 1, 0)
            batches = self.feed.training_feed(Split(x, y), None, size, order)
            if self.levers.get("feed") == "pydataset":
                batches = self.feed.EpochBatches(x, y, size, order)
            self.model.fit(
                batches, epochs=1, verbose=0, shuffle=False, callbacks=[timer.callback]
            )
        return timer.samples_per_second(size)

    def evaluate(self):
        x, y = self.eval_data
        started = time.perf_counter()
        self.model.evaluate(x, y, batch_size=self.eval_batch, verbose=0)
        return len(x) / (time.perf_counter() - started)


class StepTimer:
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


def classes(count):
    """The preprocessing of a run with `count` classes (what training.build checks)."""
    from rnn_scripts.preprocess import Preprocessing

    names = [str(c) for c in range(count)]
    return Preprocessing(
        {
            "kind": "sequences",
            "task": "classification",
            "class_names": names,
            "features": 28,
            "steps": 28,
        }
    )


def window(pool, count):
    x, y = pool
    start = int(time.perf_counter_ns() % (len(x) - count + 1))
    return x[start : start + count], y[start : start + count]


def synthetic_data(tokens, args, lever):
    """(training pool, evaluation data) from the scripts' own generators, prepared as a
    run prepares them."""
    import numpy as np

    from rnn_scripts.data.official import synthetic_images, synthetic_reviews
    from rnn_scripts.kinds import PIXEL_SCALE, WordIds

    rng = np.random.default_rng(1)
    count = (args.steps + 40) * args.batch_size * 2
    if tokens:
        length = int(lever.get("max_length", 200))
        make = lambda n: synthetic_reviews(n, 20000, rng)  # noqa: E731
        prepare = WordIds({"max_length": length}).prepare
    else:
        make = lambda n: synthetic_images(n, rng)  # noqa: E731
        prepare = lambda x: x.astype(np.float32) / np.float32(PIXEL_SCALE)  # noqa: E731
    pool, evaluation = make(count), make(args.eval_examples)
    return (
        (prepare(pool[0]), np.asarray(pool[1], np.int32)),
        (prepare(evaluation[0]), np.asarray(evaluation[1], np.int32)),
    )


def unmasked(build_model):
    """build_model with the embedding's padding mask off (mask_zero=False)."""
    import functools

    import keras

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, keras.layers.Embedding):
            config["mask_zero"] = False
        return type(layer).from_config(config)

    @functools.wraps(build_model)  # keeps the signature training.build reads
    def build(**options):
        return keras.models.clone_model(build_model(**options), clone_function=clone)

    return build


def flops_per_sample(name, units, steps):
    """Forward multiply-adds x2 of a default model's recurrent and dense layers, over all
    (padded) steps; x3 for a training step (forward and backward)."""
    gates, directions, inputs = {
        "lstm": (4, 1, [28, units]),
        "gru": (3, 1, [28, units]),
        "simplernn": (1, 1, [28, units]),
        "bilstm": (4, 2, [28, 2 * units]),
        "imdb_bilstm": (4, 2, [64]),
    }[name]
    recurrent = sum(steps * directions * 2 * gates * (i + units) * units for i in inputs)
    dense = (
        2 * directions * units * 64 + 2 * 64 * 2
        if name == "imdb_bilstm"
        else 2 * directions * units * 10
    )
    return recurrent + dense


def script_defaults(name):
    """build_model's keyword defaults (importing a script loads no Keras)."""
    import inspect

    parameters = inspect.signature(
        importlib.import_module(MODELS[name]).build_model
    ).parameters
    return {n: p.default for n, p in parameters.items() if p.default is not p.empty}


def matmul_peak(size=1024, repeats=5):
    """Best float32 matrix-product rate NumPy reaches here, in GFLOP/s."""
    import numpy as np

    a = np.random.default_rng(0).random((size, size), dtype=np.float32)
    best = float("inf")
    for _ in range(repeats + 1):
        started = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


# --------------------------------------------------------------------------------------
# Native PyTorch: the same networks, Adam 1e-3, cross-entropy, the same batch size
# --------------------------------------------------------------------------------------
def torch_network(name, units, vocab_size):
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
            self.embedding = nn.Embedding(vocab_size, 64, padding_idx=0)
            self.rnn = nn.LSTM(64, units, batch_first=True, bidirectional=True)
            self.hidden, self.out = nn.Linear(2 * units, 64), nn.Linear(64, 2)

        def forward(self, x):
            lengths = (x != 0).sum(1).clamp(min=1)
            packed = nn.utils.rnn.pack_padded_sequence(
                self.embedding(x), lengths, batch_first=True, enforce_sorted=False
            )
            _, (h, _) = self.rnn(packed)
            return self.out(torch.relu(self.hidden(torch.cat([h[-2], h[-1]], 1))))

    if name == "imdb_bilstm":
        return Reviews()
    kinds = {"lstm": nn.LSTM, "gru": nn.GRU, "simplernn": nn.RNN, "bilstm": nn.LSTM}
    return Recurrent(kinds[name], name == "bilstm")


class TorchNetwork:
    def __init__(self, name, variant, args):
        import torch

        from rnn_scripts.devices import keep_freed_memory

        keep_freed_memory()  # the allocator setting ours has: compare the networks alone
        defaults = script_defaults(name)
        self.torch, self.args = torch, args
        self.tokens = name == "imdb_bilstm"
        self.network = torch_network(name, defaults["units"], 20000)
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=1e-3)
        self.loss = torch.nn.CrossEntropyLoss()
        self.label_type = torch.int64
        self.pool, self.eval_data = synthetic_data(self.tokens, args, {})
        self.flops = flops_per_sample(
            name, defaults["units"], self.eval_data[0].shape[1]
        )

    def backend(self):
        return "pytorch"

    def parameters(self):
        return sum(p.numel() for p in self.network.parameters())

    def batches(self, x, y, size):
        for start in range(0, len(x), size):
            xb = self.torch.from_numpy(x[start : start + size])
            yield xb, self.torch.from_numpy(y[start : start + size]).to(self.label_type)

    def train_window(self):
        size = self.args.batch_size
        x, y = window(self.pool, (self.args.steps + 1) * size)
        self.network.train()
        started = None
        for number, (xb, yb) in enumerate(self.batches(x, y, size)):
            self.optimizer.zero_grad()
            self.loss(self.network(xb), yb).backward()
            self.optimizer.step()
            if number == 0:  # as for Keras: the first step is not timed
                started = time.perf_counter()
        return self.args.steps * size / (time.perf_counter() - started)

    def evaluate(self):
        x, y = self.eval_data
        self.network.eval()
        started = time.perf_counter()
        with self.torch.no_grad():
            for xb, yb in self.batches(x, y, 1024):
                self.loss(self.network(xb), yb).item()
        return len(x) / (time.perf_counter() - started)


if __name__ == "__main__":
    sys.exit(main())
