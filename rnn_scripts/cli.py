"""The command line every script shares: one parser, grouped the way a user looks for
things.

Per script there are only: the flags made from build_model's keyword parameters (the
contract), the kind of data it reads, and the defaults its run() call sets (epochs, an
optimizer or class weights of its own). Flags that belong to the other kind of data are
not offered but keep their defaults, so that every run's configuration has the same
names. Nothing here imports Keras, so --help and argument errors answer at once.
"""

import argparse
import math
import os
from dataclasses import dataclass
from pathlib import Path

from .config import Config
from .errors import EXIT_USAGE, UsageError

BACKENDS = ("tensorflow", "jax", "torch")
DATASETS = {"sequences": ("mnist", "fashion_mnist", "mnist-sample"), "text": ("imdb",)}
OPTIMIZERS = ("adam", "rmsprop", "sgd")
SCHEDULES = ("constant", "cosine", "plateau")
EXPORT_FORMATS = ("saved_model", "onnx")
SMOKE_LIMIT = 300
STEPS_PER_EXECUTION = 16  # measured faster on the CPU (docs/performance.md)
SINGLE_THREAD_MAX_CORES = 2  # one thread per TensorFlow op measured faster up to here


@dataclass(frozen=True)
class ScriptDefaults:
    """What a script's run() call sets: the default epochs, and whether it brings its own
    optimizer or class weights (then --optimizer is not offered / --class-weight says
    so)."""

    epochs: int = 10
    own_optimizer: bool = False
    own_class_weight: bool = False


def checked(convert, accept, expected):
    """An argparse type: convert the text, then accept or refuse it in one line."""

    def parse(text):
        try:
            value = convert(text)
        except (ValueError, OverflowError):
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


def host_and_port(text):
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(text)
    return text


def one_character(text):
    return {"\\t": "\t", "tab": "\t"}.get(text, text)


def names(text):
    found = [name.strip() for name in text.split(",")]
    if not all(found):
        raise ValueError(text)
    return tuple(found)


positive_int = checked(int, lambda v: v > 0, "a positive integer")
integer = checked(int, lambda v: True, "an integer")
non_negative_int = checked(int, lambda v: v >= 0, "an integer >= 0")
finite_float = checked(float, math.isfinite, "a number")
positive_float = checked(
    float, lambda v: math.isfinite(v) and v > 0, "a positive number"
)
learning_rate = checked(
    float, lambda v: math.isfinite(v) and 0 < v <= 1e6, "a positive number up to 1e6"
)
fraction = checked(float, lambda v: 0 <= v < 1, "a number in [0, 1)")
seed_value = checked(int, lambda v: 0 <= v < 2**32, "an integer in [0, 2**32)")
address = checked(host_and_port, lambda v: True, "HOST:PORT")
delimiter = checked(
    one_character, lambda v: len(v) == 1 and v not in '"\r\n', "one character (or tab)"
)
column_names = checked(names, lambda v: True, "column names separated by commas")
monitor = checked(
    str, lambda v: bool(v.strip()), "a figure of history.csv (val_loss, ...)"
)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad value is one line (and exit code 2, as argparse's)."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def build_parser(
    prog, description, contract, script=ScriptDefaults(), with_defaults=True
):
    """The script's parser; without defaults, a parse holds only the names given."""
    parser = OneLineParser(
        prog=prog,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # `--back jax` must not mean --backend
    )

    def group(title):
        return adder(parser.add_argument_group(title), with_defaults)

    add_training_flags(group("training"), script)
    add_model_flags(group("model (build_model's keyword parameters)"), contract)
    others = add_data_flags(group("data"), contract.reads)
    add_run_folder_flags(group("run folder"))
    add_hardware_flags(group("hardware and speed"))
    add_distribution_flags(group("more than one device or machine"))
    if with_defaults:
        parser.set_defaults(**others)
        if script.own_optimizer:
            parser.set_defaults(optimizer="script")
    return parser


def adder(group, with_defaults):
    """group.add_argument, the default shown in the help (escaped for argparse's %)."""

    def add(flag, default=None, help=None, show=True, **options):
        text = (help or "").replace("%", "%%")
        if not with_defaults:
            default = argparse.SUPPRESS
        elif show and default not in (None, False, argparse.SUPPRESS):
            text += f" (default: {default})".replace("%", "%%")
        group.add_argument(flag, default=default, help=text, **options)

    return add


def add_training_flags(add, script):
    add("--epochs", script.epochs, "training epochs", type=positive_int)
    add("--batch-size", 64, "global batch size", type=positive_int)
    if not script.own_optimizer:
        add("--optimizer", "adam", "optimizer", choices=OPTIMIZERS)
    add("--learning-rate", 1e-3, "learning rate", type=learning_rate)
    schedules = "cosine: decay to 0 over the run's steps; plateau: halve the learning rate when the monitored figure has not improved for 2 epochs"  # noqa: E501
    add("--lr-schedule", "constant", schedules, choices=SCHEDULES)
    add("--clipnorm", None, "clip each gradient to this norm", type=positive_float)
    stopping = "stop after PATIENCE epochs without a better monitored figure and keep the best epoch's weights"  # noqa: E501
    add("--early-stopping", None, stopping, type=positive_int, metavar="PATIENCE")
    picks = "the figure of history.csv that picks best.keras, early stopping and the plateau schedule's epochs (auto: val_accuracy, or val_loss for a regression)"  # noqa: E501
    add("--monitor", "auto", picks, type=monitor, metavar="FIGURE")
    weighs = "balanced: weigh each class by N / (classes x its count)"
    if script.own_class_weight:
        weighs += " (default: the script's own)"
    default = "script" if script.own_class_weight else "none"
    add(
        "--class-weight",
        default,
        weighs,
        show=not script.own_class_weight,
        choices=("none", "balanced"),
    )
    add("--seed", 1, "seeds weights, splits and batch order", type=seed_value)


def add_model_flags(add, contract):
    for flag in contract.flags:
        if flag.type == "bool" and not flag.many:
            add(
                flag.flag,
                flag.default,
                flag.help,
                show=flag.default is True,
                dest=flag.name,
                action="store_true",
            )
            add(
                "--no-" + flag.flag[2:],
                flag.default,
                f"turn off {flag.flag}",
                show=False,
                dest=flag.name,
                action="store_false",
            )
            continue
        positive = (
            flag.type == "int" and isinstance(flag.default, int) and flag.default >= 1
        )
        kinds = {"int": positive_int if positive else integer, "float": finite_float}
        options = {"type": kinds.get(flag.type, str)}
        if flag.choices:
            options["choices"] = flag.choices
        default = flag.default
        if flag.many:  # a list, as args.json gives it back on resume
            options["nargs"], default = "+", None if default is None else list(default)
        add(flag.flag, default, flag.help, dest=flag.name, **options)


def add_data_flags(add, reads):
    """The data flags; returns the other kind's flags' defaults."""
    datasets = DATASETS[reads]
    add("--dataset", datasets[0], "data set to train on", choices=datasets)
    kinds = {
        "sequences": ".npz, or .csv/.tsv of numbers (see the README's 'Your own data')",
        "text": ".csv/.tsv of labelled texts, a folder of .txt files per class, or .npz",
    }
    add("--data", None, f"your own data: {kinds[reads]}", type=Path, metavar="PATH")
    add(
        "--validation-data",
        None,
        "validation examples (as --data)",
        type=Path,
        metavar="PATH",
    )
    add("--test-data", None, "test examples (as --data)", type=Path, metavar="PATH")
    task = "auto: integer or text labels (or a file's class_names) are classes, float targets are values"  # noqa: E501
    add("--task", "auto", task, choices=("auto", "classification", "regression"))
    add("--label-column", "label", ".csv: the column of labels or targets")
    add(
        "--delimiter",
        None,
        ".csv/.tsv: the column separator (unset: sniffed)",
        type=delimiter,
    )
    text = {"text_column": "text", "vocab_size": 20000, "max_length": 200}
    numbers = {"sequence_column": "sequence", "target": None, "window": 24, "horizon": 1}
    numbers.update(feature_columns=None, ignore_columns=None)
    if reads == "text":
        add("--text-column", "text", ".csv: the column of texts")
        add("--vocab-size", 20000, "words kept, the most frequent", type=positive_int)
        words = "words kept per text (the first ones; shorter texts are padded)"
        add("--max-length", 200, words, type=positive_int)
    else:
        add(
            "--sequence-column",
            "sequence",
            ".csv with one row per time step: the column naming each row's sequence",
        )
        add(
            "--target",
            None,
            "forecast COLUMN of a .csv of time series",
            metavar="COLUMN",
        )
        add("--window", 24, "--target: time steps the model sees", type=positive_int)
        add("--horizon", 1, "--target: steps ahead to forecast", type=positive_int)
        add(
            "--feature-columns",
            None,
            ".csv: the feature columns, by name (unset: every other numeric one)",
            type=column_names,
            metavar="A,B",
        )
        add(
            "--ignore-columns",
            None,
            ".csv: numeric columns that are not features",
            type=column_names,
            metavar="A,B",
        )
    add("--data-dir", None, "read the official data files from this folder", type=Path)
    add("--synthetic", False, "generated data of the real shapes", action="store_true")
    held_out = "fraction of the training examples held out for validation (seeded)"
    add("--validation-split", 0.1, held_out, type=fraction)
    add(
        "--limit",
        None,
        "only the first N training, N/6 test examples",
        type=positive_int,
    )
    smoke = f"one epoch on {SMOKE_LIMIT} examples (the shipped sample or generated data unless --data), written to a temporary folder unless --output-dir"  # noqa: E501
    add("--smoke", False, smoke, action="store_true")
    changed = "resume although the data differ from those the run started with"
    add("--allow-data-change", False, changed, action="store_true")
    return numbers if reads == "text" else text


def add_run_folder_flags(add):
    add(
        "--output-dir",
        None,
        "where the run writes (default runs/SCRIPT-TIME)",
        type=Path,
    )
    add(
        "--resume",
        None,
        "continue the run in DIR (a finished one: with a larger --epochs)",
        type=Path,
        metavar="DIR",
    )
    add(
        "--overwrite",
        False,
        "replace a finished run in --output-dir",
        action="store_true",
    )
    add(
        "--tensorboard", False, "write TensorBoard logs to RUN/logs", action="store_true"
    )
    export = "also write the model for serving (preprocessing included) to RUN/export; repeat for both"  # noqa: E501
    add("--export", None, export, action="append", choices=EXPORT_FORMATS)


def add_hardware_flags(add):
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    add(
        "--backend",
        backend,
        "Keras backend, or $KERAS_BACKEND when set",
        choices=BACKENDS,
    )
    cudnn = (
        "cuDNN kernels for every LSTM/GRU layer: true fails where they cannot be used"
    )
    add("--use-cudnn", "auto", cudnn, choices=("auto", "true", "false"))
    precision = "compute in 16-bit floats (weights, outputs and loss stay float32)"
    add("--mixed-precision", "off", precision, choices=("off", "float16", "bfloat16"))
    steps = f"training steps per compiled call (default {STEPS_PER_EXECUTION}; 1 on torch and under --distribute on tensorflow, which allow no other)"  # noqa: E501
    add("--steps-per-execution", None, steps, type=positive_int)
    threads = f"threads per TensorFlow op on the CPU; unset: 1 on machines with at most {SINGLE_THREAD_MAX_CORES} cores, else TensorFlow's own"  # noqa: E501
    add("--cpu-threads", None, threads, type=positive_int)
    fused = "auto: the measured speed-ups of docs/performance.md where they apply and pass their self-check; off: Keras' own code only"  # noqa: E501
    add("--fused-kernels", "auto", fused, choices=("auto", "off"))
    add("--deterministic", False, "repeatable GPU results, slower", action="store_true")
    add("--verbose", False, "show the backend's start-up log", action="store_true")


def add_distribution_flags(add):
    several = "mirrored: all devices of this machine; multi-worker: several processes or machines (JAX backend)"  # noqa: E501
    add("--distribute", "none", several, choices=("none", "mirrored", "multi-worker"))
    add("--coordinator", None, "multi-worker: process 0's HOST:PORT", type=address)
    add("--num-processes", None, "multi-worker: how many processes", type=positive_int)
    add(
        "--process-id", None, "multi-worker: this process, 0..N-1", type=non_negative_int
    )


def reserved_names():
    """The pipeline's own argument names (a model flag may not take one)."""
    from .contract import Contract

    found = {"optimizer"}
    for reads in ("sequences", "text"):
        found |= set(
            vars(build_parser("x", None, Contract(reads, (), ())).parse_args([]))
        )
    return found


# --------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------
def parse_arguments(prog, description, contract, script, argv):
    """The run's Config, derived defaults filled in, and the names given explicitly."""
    parser = build_parser(prog, description, contract, script)
    namespace = parser.parse_args(argv)
    explicit = set(
        vars(build_parser(prog, description, contract, script, False).parse_args(argv))
    )
    try:
        check_combinations(namespace, explicit)
    except UsageError as error:
        parser.error(str(error))
    return resolve(Config(vars(namespace)), explicit), explicit


def check_combinations(args, explicit):
    if args.resume and args.overwrite:
        raise UsageError(
            "--resume continues a run, --overwrite starts it again: give one"
        )
    if args.resume and args.output_dir and args.output_dir != args.resume:
        raise UsageError("--resume DIR writes into DIR: leave out --output-dir")
    if args.limit is not None and args.limit < 6:
        raise UsageError(
            f"--limit: expected at least 6 (N/6 test examples), got {args.limit}"
        )
    if args.data and (args.synthetic or args.data_dir):
        raise UsageError("--data is your own data: leave out --synthetic and --data-dir")
    for flag in ("validation_data", "test_data"):
        if getattr(args, flag) and not args.data:
            raise UsageError(
                f"--{flag.replace('_', '-')} goes with --data (your own training data)"
            )
    if args.target is not None and not args.data:
        raise UsageError("--target forecasts a column of your own .csv: give --data")
    series = [f for f in ("window", "horizon") if f in explicit]
    if series and args.target is None:
        raise UsageError(
            f"--{series[0]} goes with --target COLUMN (the series' column to forecast)"
        )
    cluster = [
        f
        for f in ("coordinator", "num_processes", "process_id")
        if getattr(args, f) is not None
    ]
    if cluster and args.distribute != "multi-worker":
        raise UsageError(
            f"--{cluster[0].replace('_', '-')} belongs to --distribute multi-worker"
        )
    ids = (args.process_id, args.num_processes)
    if None not in ids and ids[0] >= ids[1]:
        raise UsageError(f"--process-id must lie in 0..{ids[1] - 1}")
    if args.distribute == "multi-worker" and not (args.output_dir or args.resume):
        raise UsageError(
            "--distribute multi-worker needs --output-dir, on storage every process sees"
        )
    if (args.steps_per_execution or 1) > 1 and one_step_only(args):
        raise UsageError(
            "--steps-per-execution must be 1 on the torch backend and under "
            "--distribute on tensorflow"
        )


def one_step_only(args):
    """Keras' torch trainer allows only 1 step per call; its TensorFlow trainer fails
    with more under a tf.distribute strategy."""
    distributed = args.distribute != "none"
    return args.backend == "torch" or (args.backend == "tensorflow" and distributed)


def resolve(config, explicit=()):
    """Fill the defaults that follow from other arguments."""
    changes = {"export": sorted(set(config.export or ()))}
    if config.steps_per_execution is None:
        changes["steps_per_execution"] = (
            1 if one_step_only(config) else STEPS_PER_EXECUTION
        )
    if config.smoke:
        changes.update(epochs=1, limit=config.limit or SMOKE_LIMIT)
        chosen = (
            config.data or config.data_dir or config.synthetic or "dataset" in explicit
        )
        if not chosen and config.dataset == "imdb":  # offline and at once:
            changes["synthetic"] = True  # generated reviews,
        elif not chosen:
            changes["dataset"] = "mnist-sample"  # or the shipped digits
    return config.replace(**changes)
