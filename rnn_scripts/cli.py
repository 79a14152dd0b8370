"""The command line every script shares: one parser, grouped the way a user looks for things.

A script's defaults come from its `build_model` signature (units, num_layers, vocab_size) and
its `run(..., epochs=N)` call; nothing else here is per script.
"""

import argparse
import math
import os
from pathlib import Path

from .errors import EXIT_USAGE, UsageError

BACKENDS = ("tensorflow", "jax", "torch")
IMAGE_DATASETS = ("mnist", "fashion_mnist", "mnist-sample")
TEXT_DATASETS = ("imdb",)
OPTIMIZERS = ("adam", "rmsprop", "sgd")
SCHEDULES = ("constant", "cosine", "plateau")
SMOKE_LIMIT = 2000
DEFAULT_MAX_LENGTH = 200  # words kept per review or sentence
STEPS_PER_EXECUTION = 16  # measured faster on the CPU (docs/performance.md)
SINGLE_THREAD_MAX_CORES = 2  # one thread per TensorFlow op measured faster up to here
PATH_ARGUMENTS = ("data", "data_dir", "output_dir", "resume")
# Flags that may differ when an unfinished run continues: they change neither the data, the
# model nor the batches, and are recorded in args.json. Everything else must stay the same.
CHANGEABLE_ON_RESUME = {
    "epochs",
    "learning_rate",
    "clipnorm",
    "cpu_threads",
    "tensorboard",
    "verbose",
    "allow_data_change",
    "coordinator",
    "num_processes",
    "process_id",
}
NOT_PART_OF_A_RUN = {"output_dir", "resume", "overwrite"}


def checked(convert, accept, expected):
    """An argparse type: convert the text, then accept or refuse the value in one line."""

    def parse(text):
        try:
            value = convert(text)
        except ValueError:
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


positive_int = checked(int, lambda v: v > 0, "a positive integer")
non_negative_int = checked(int, lambda v: v >= 0, "an integer >= 0")
positive_float = checked(float, lambda v: math.isfinite(v) and v > 0, "a positive number")
fraction = checked(float, lambda v: 0 <= v < 1, "a number in [0, 1)")
seed_value = checked(int, lambda v: 0 <= v < 2**32, "an integer in [0, 2**32)")
address = checked(host_and_port, lambda v: True, "HOST:PORT")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the script's docstring as written and shows defaults that mean something."""

    def _get_help_string(self, action):
        if action.default in (None, False, argparse.SUPPRESS):
            return action.help
        return f"{action.help} (default: %(default)s)"


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad value is reported in one line (and still exits with code 2)."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def build_parser(prog, description, defaults):
    """`defaults`: epochs, units, and the parameters build_model names (vocab_size, ...)."""
    parser = OneLineParser(
        prog=prog,
        description=description,
        formatter_class=HelpFormatter,
        allow_abbrev=False,  # `--back jax` must not mean --backend
    )
    add_training_flags(parser.add_argument_group("training"), defaults)
    add_data_flags(parser.add_argument_group("data"), defaults)
    add_run_folder_flags(parser.add_argument_group("run folder"))
    add_hardware_flags(parser.add_argument_group("hardware and speed"))
    add_distribution_flags(parser.add_argument_group("more than one device or machine"))
    return parser


def add_training_flags(group, defaults):
    add = group.add_argument
    add("--epochs", type=positive_int, default=defaults["epochs"], help="training epochs")
    add("--batch-size", type=positive_int, default=64, help="global batch size")
    add("--optimizer", choices=OPTIMIZERS, default="adam", help="optimizer")
    add("--learning-rate", type=positive_float, default=1e-3, help="learning rate")
    add(
        "--lr-schedule",
        choices=SCHEDULES,
        default="constant",
        help="cosine: decay to 0 over the run's steps; plateau: halve the learning rate "
        "when the validation loss has not improved for 2 epochs",
    )
    add("--clipnorm", type=positive_float, help="clip each gradient to this norm")
    add(
        "--early-stopping",
        type=positive_int,
        metavar="PATIENCE",
        help="stop after PATIENCE epochs without a better validation accuracy and keep "
        "the best epoch's weights",
    )
    add("--units", type=positive_int, default=defaults["units"], help="units per layer")
    if "num_layers" in defaults:
        add(
            "--layers",
            dest="num_layers",
            type=positive_int,
            default=defaults["num_layers"],
            help="recurrent layers",
        )
    add("--seed", type=seed_value, default=1, help="seeds weights, split and batch order")


def add_data_flags(group, defaults):
    add = group.add_argument
    tokens = "vocab_size" in defaults
    datasets = TEXT_DATASETS if tokens else IMAGE_DATASETS
    add("--dataset", choices=datasets, default=datasets[0], help="data set to train on")
    kinds = ".npz of token ids, or .csv of labelled texts" if tokens else ".npz"
    add("--data", type=Path, metavar="PATH", help=f"your own data: {kinds} (see README)")
    if tokens:
        add("--text-column", default="text", help="--data .csv: the column of texts")
        add("--label-column", default="label", help="--data .csv: the column of labels")
    add("--data-dir", type=Path, help="read the official data files from this folder")
    add("--synthetic", action="store_true", help="generated data of the real shapes")
    add(
        "--validation-split",
        type=fraction,
        default=0.1,
        help="shuffled fraction of the training set held out for validation",
    )
    add("--limit", type=positive_int, help="only the first N training, N/6 test examples")
    add("--smoke", action="store_true", help=f"one epoch on {SMOKE_LIMIT} examples")
    if tokens:
        add(
            "--vocab-size",
            type=positive_int,
            default=defaults["vocab_size"],
            help="words kept",
        )
        add(
            "--max-length",
            type=positive_int,
            default=DEFAULT_MAX_LENGTH,
            help="words kept per text (the first ones; shorter texts are padded)",
        )
    add(
        "--allow-data-change",
        action="store_true",
        help="resume although the data differ from those the run started with",
    )


def add_run_folder_flags(group):
    add = group.add_argument
    add("--output-dir", type=Path, help="where the run writes (default runs/SCRIPT-TIME)")
    add("--resume", type=Path, metavar="DIR", help="continue the unfinished run in DIR")
    add("--overwrite", action="store_true", help="replace a finished run in --output-dir")
    add("--tensorboard", action="store_true", help="write TensorBoard logs to RUN/logs")


def add_hardware_flags(group):
    add = group.add_argument
    add(
        "--backend",
        choices=BACKENDS,
        default=os.environ.get("KERAS_BACKEND", "tensorflow"),
        help="Keras backend, or $KERAS_BACKEND when set",
    )
    add(
        "--use-cudnn",
        choices=("auto", "true", "false"),
        default="auto",
        help="cuDNN kernels for LSTM/GRU: true fails loudly where they cannot be used",
    )
    add(
        "--mixed-precision",
        choices=("off", "float16", "bfloat16"),
        default="off",
        help="compute in 16-bit floats (weights, logits and loss stay float32)",
    )
    add(
        "--steps-per-execution",
        type=positive_int,
        help=f"training steps per compiled call (default {STEPS_PER_EXECUTION}; 1 on "
        "torch and under --distribute on tensorflow, which allow no other)",
    )
    add(
        "--cpu-threads",
        type=positive_int,
        help="threads per TensorFlow op on the CPU; unset: 1 on machines with at most "
        f"{SINGLE_THREAD_MAX_CORES} cores, else TensorFlow's own",
    )
    add("--deterministic", action="store_true", help="repeatable GPU results, slower")
    add("--verbose", action="store_true", help="show the backend's start-up log")


def add_distribution_flags(group):
    add = group.add_argument
    add(
        "--distribute",
        choices=("none", "mirrored", "multi-worker"),
        default="none",
        help="mirrored: all devices of this machine; multi-worker: several processes "
        "or machines (JAX backend)",
    )
    add("--coordinator", type=address, help="multi-worker: process 0's HOST:PORT")
    add("--num-processes", type=positive_int, help="multi-worker: how many processes")
    add("--process-id", type=non_negative_int, help="multi-worker: this process, 0..N-1")


# --------------------------------------------------------------------------------------
# Parsing, and settling the arguments of a run that continues
# --------------------------------------------------------------------------------------
def parse_arguments(prog, description, defaults, argv):
    """The arguments, with derived defaults filled in, and the names given explicitly."""
    parser = build_parser(prog, description, defaults)
    args = parser.parse_args(argv)
    explicit = given_names(parser, argv)
    try:
        check_combinations(args)
    except UsageError as error:
        parser.error(str(error))
    return resolve(args), explicit


def given_names(parser, argv):
    """Which arguments the command line names (argparse leaves preset attributes alone)."""
    unset = object()
    namespace = argparse.Namespace(**{a.dest: unset for a in parser._actions})
    parsed = parser.parse_args(argv, namespace=namespace)
    return {name for name, value in vars(parsed).items() if value is not unset}


def check_combinations(args):
    if args.resume and args.overwrite:
        raise UsageError("--resume continues a run, --overwrite starts it again: give one")
    if args.resume and args.output_dir and args.output_dir != args.resume:
        raise UsageError("--resume DIR writes into DIR: leave out --output-dir")
    if args.limit is not None and args.limit < 6:
        raise UsageError(f"--limit: expected at least 6 (N/6 test examples), got {args.limit}")
    if args.data and (args.synthetic or args.data_dir):
        raise UsageError("--data is your own data: leave out --synthetic and --data-dir")
    cluster = [f for f in ("coordinator", "num_processes", "process_id") if getattr(args, f) is not None]
    if cluster and args.distribute != "multi-worker":
        flag = "--" + cluster[0].replace("_", "-")
        raise UsageError(f"{flag} belongs to --distribute multi-worker")
    if None not in (args.process_id, args.num_processes) and args.process_id >= args.num_processes:
        raise UsageError(f"--process-id must lie in 0..{args.num_processes - 1}")
    if args.distribute == "multi-worker" and not (args.output_dir or args.resume):
        raise UsageError("--distribute multi-worker needs --output-dir, on storage every process sees")
    if (args.steps_per_execution or 1) > 1 and one_step_only(args):
        raise UsageError(
            "--steps-per-execution must be 1 on the torch backend and under "
            "--distribute on tensorflow"
        )


def one_step_only(args):
    """Keras' torch trainer allows only 1 step per call; its TensorFlow trainer fails with
    more under a tf.distribute strategy."""
    distributed = args.distribute != "none"
    return args.backend == "torch" or (args.backend == "tensorflow" and distributed)


def resolve(args):
    if args.steps_per_execution is None:
        args.steps_per_execution = 1 if one_step_only(args) else STEPS_PER_EXECUTION
    if args.smoke:
        args.epochs, args.limit = 1, args.limit or SMOKE_LIMIT
    return args


def settle(args, compared, saved):
    """Continue a saved run: its arguments, except where `compared` names give new values.

    A new value is taken where CHANGEABLE_ON_RESUME allows it, else refused in one line.
    Returns the arguments and the changes {name: [saved, new]}.
    """
    merged, changes = argparse.Namespace(**vars(args)), {}
    for name, old in saved.items():
        if not hasattr(args, name):
            raise UsageError(f"its args.json names an unknown argument {name!r}")
        new = getattr(args, name)
        if name in NOT_PART_OF_A_RUN:
            continue
        if name not in compared or new == old:
            setattr(merged, name, old)
        elif name in CHANGEABLE_ON_RESUME:
            changes[name] = [old, new]
        else:
            flag = "--" + name.replace("_", "-").replace("num-layers", "layers")
            raise UsageError(f"{flag} was {show(old)}, now {show(new)}")
    return merged, changes


def show(value):
    return "not given" if value is None else value


def to_json(args):
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}


def from_json(values):
    return {k: (Path(v) if k in PATH_ARGUMENTS and v is not None else v) for k, v in values.items()}
