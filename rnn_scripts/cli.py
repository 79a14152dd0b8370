"""The command line every script shares: one parser, grouped the way a user looks for things.

Per script there are only: the flags made from build_model's keyword parameters (the
contract), the kind of data it reads, and the defaults its run() call sets (epochs, an
optimizer or class weights of its own). Flags that belong to the other kind of data are not
offered but keep their defaults, so that every run's configuration has the same names.
Nothing here imports Keras, so --help and argument errors answer at once.
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
# Flags that may differ when an unfinished run continues: they change neither the data, the
# model nor the batches, and are recorded in args.json. Everything else must stay the same.
# The data's paths may change (a moved file): the data's fingerprint guards their content.
CHANGEABLE_ON_RESUME = {
    "data",
    "validation_data",
    "test_data",
    "data_dir",
    "epochs",
    "learning_rate",
    "clipnorm",
    "cpu_threads",
    "fused_kernels",
    "tensorboard",
    "export",
    "verbose",
    "allow_data_change",
    "coordinator",
    "num_processes",
    "process_id",
}
NOT_PART_OF_A_RUN = {"output_dir", "resume", "overwrite"}


@dataclass(frozen=True)
class ScriptDefaults:
    """What a script's run() call sets: the default epochs, and whether it brings its own
    optimizer or class weights (then --optimizer is not offered / --class-weight says so)."""

    epochs: int = 10
    own_optimizer: bool = False
    own_class_weight: bool = False


def checked(convert, accept, expected):
    """An argparse type: convert the text, then accept or refuse the value in one line."""

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


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the script's docstring as written and shows defaults that mean something."""

    def _get_help_string(self, action):
        if action.default in (None, False, argparse.SUPPRESS) or action.help is None:
            return action.help
        if isinstance(action, argparse.BooleanOptionalAction):
            return action.help  # argparse adds the default itself
        return f"{action.help} (default: %(default)s)"


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad value is reported in one line (and still exits with code 2)."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def build_parser(prog, description, contract, script=ScriptDefaults()):
    parser = OneLineParser(
        prog=prog,
        description=description,
        formatter_class=HelpFormatter,
        allow_abbrev=False,  # `--back jax` must not mean --backend
    )
    add_training_flags(parser.add_argument_group("training"), script)
    add_model_flags(
        parser.add_argument_group("model (build_model's keyword parameters)"), contract
    )
    add_data_flags(parser, contract.reads)
    add_run_folder_flags(parser.add_argument_group("run folder"))
    add_hardware_flags(parser.add_argument_group("hardware and speed"))
    add_distribution_flags(parser.add_argument_group("more than one device or machine"))
    return parser


def add_training_flags(group, script):
    add = group.add_argument
    add("--epochs", type=positive_int, default=script.epochs, help="training epochs")
    add("--batch-size", type=positive_int, default=64, help="global batch size")
    if script.own_optimizer:
        group.set_defaults(optimizer="script")
    else:
        add("--optimizer", choices=OPTIMIZERS, default="adam", help="optimizer")
    add("--learning-rate", type=learning_rate, default=1e-3, help="learning rate")
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
        help="stop after PATIENCE epochs without a better validation score (accuracy, or "
        "the loss of a regression) and keep the best epoch's weights",
    )
    add(
        "--class-weight",
        choices=("none", "balanced"),
        default="script" if script.own_class_weight else "none",
        help="balanced: weigh each class by N / (classes x its count)"
        + (" (default: the script's own)" if script.own_class_weight else ""),
    )
    add(
        "--seed",
        type=seed_value,
        default=1,
        help="seeds weights, splits and batch order",
    )


def add_model_flags(group, contract):
    for flag in contract.flags:
        default = flag.default
        if isinstance(default, bool):
            kind = {"action": argparse.BooleanOptionalAction}
        elif isinstance(default, int):
            kind = {"type": positive_int if default >= 1 else integer}
        elif isinstance(default, float):
            kind = {"type": finite_float}
        else:  # str, or None: text
            kind = {"type": str}
        group.add_argument(
            flag.flag, dest=flag.name, default=default, help=flag.help, **kind
        )


def add_data_flags(parser, reads):
    group = parser.add_argument_group("data")
    add = group.add_argument
    datasets = DATASETS[reads]
    add("--dataset", choices=datasets, default=datasets[0], help="data set to train on")
    kinds = {
        "sequences": ".npz, or .csv/.tsv of numbers (see docs/own-data.md)",
        "text": ".csv/.tsv of labelled texts, a folder of .txt files per class, or .npz",
    }[reads]
    add("--data", type=Path, metavar="PATH", help=f"your own data: {kinds}")
    add(
        "--validation-data",
        type=Path,
        metavar="PATH",
        help="validation examples (as --data)",
    )
    add("--test-data", type=Path, metavar="PATH", help="test examples (as --data)")
    add(
        "--task",
        choices=("auto", "classification", "regression"),
        default="auto",
        help="auto: integer or text labels are classes, float targets are values",
    )
    add("--label-column", default="label", help=".csv: the column of labels or targets")
    add(
        "--delimiter",
        type=delimiter,
        help=".csv/.tsv: the column separator (unset: sniffed)",
    )
    text = {"text_column": "text", "vocab_size": 20000, "max_length": 200}
    series = {"sequence_column": "sequence", "target": None, "window": 24, "horizon": 1}
    if reads == "text":
        add("--text-column", default="text", help=".csv: the column of texts")
        add(
            "--vocab-size",
            type=positive_int,
            default=20000,
            help="words kept, the most frequent",
        )
        add(
            "--max-length",
            type=positive_int,
            default=200,
            help="words kept per text (the first ones; shorter texts are padded)",
        )
        parser.set_defaults(**series)
    else:
        add(
            "--sequence-column",
            default="sequence",
            help=".csv with one row per time step: the column naming each row's sequence",
        )
        add(
            "--target", metavar="COLUMN", help="forecast COLUMN of a .csv of time series"
        )
        add(
            "--window",
            type=positive_int,
            default=24,
            help="--target: time steps the model sees",
        )
        add(
            "--horizon",
            type=positive_int,
            default=1,
            help="--target: steps ahead to forecast",
        )
        parser.set_defaults(**text)
    add("--data-dir", type=Path, help="read the official data files from this folder")
    add("--synthetic", action="store_true", help="generated data of the real shapes")
    add(
        "--validation-split",
        type=fraction,
        default=0.1,
        help="fraction of the training examples held out for validation (seeded)",
    )
    add(
        "--limit", type=positive_int, help="only the first N training, N/6 test examples"
    )
    add(
        "--smoke",
        action="store_true",
        help=f"one epoch on {SMOKE_LIMIT} examples (the shipped sample or generated "
        "data unless --data), written to a temporary folder unless --output-dir",
    )
    add(
        "--allow-data-change",
        action="store_true",
        help="resume although the data differ from those the run started with",
    )


def add_run_folder_flags(group):
    add = group.add_argument
    add(
        "--output-dir", type=Path, help="where the run writes (default runs/SCRIPT-TIME)"
    )
    add("--resume", type=Path, metavar="DIR", help="continue the unfinished run in DIR")
    add(
        "--overwrite", action="store_true", help="replace a finished run in --output-dir"
    )
    add("--tensorboard", action="store_true", help="write TensorBoard logs to RUN/logs")
    add(
        "--export",
        action="append",
        choices=EXPORT_FORMATS,
        help="also write the model for serving (preprocessing included) to RUN/export; "
        "repeat for both",
    )


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
        help="cuDNN kernels for every LSTM/GRU layer: true fails loudly where they cannot be used",
    )
    add(
        "--mixed-precision",
        choices=("off", "float16", "bfloat16"),
        default="off",
        help="compute in 16-bit floats (weights, outputs and loss stay float32)",
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
    add(
        "--fused-kernels",
        choices=("auto", "off"),
        default="auto",
        help="auto: the measured speed-ups of docs/performance.md where they apply and pass "
        "their self-check; off: Keras' own code only",
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


def reserved_names():
    """The pipeline's own argument names (a model flag may not take one)."""
    from .contract import Contract

    parser = build_parser("x", None, Contract("sequences", (), ()))
    names = {action.dest for action in parser._actions} | set(parser._defaults)
    other = build_parser("x", None, Contract("text", (), ()))
    return names | {action.dest for action in other._actions} | {"optimizer"}


# --------------------------------------------------------------------------------------
# Parsing, and settling the arguments of a run that continues
# --------------------------------------------------------------------------------------
def parse_arguments(prog, description, contract, script, argv):
    """The run's Config, with derived defaults filled in, and the names given explicitly."""
    parser = build_parser(prog, description, contract, script)
    namespace = parser.parse_args(argv)
    explicit = given_names(parser, argv)
    try:
        check_combinations(namespace)
    except UsageError as error:
        parser.error(str(error))
    return resolve(Config(vars(namespace)), explicit), explicit


def given_names(parser, argv):
    """Which arguments the command line names (argparse leaves preset attributes alone;
    an append action copies a preset list before appending, so it gets an unset list)."""
    unset, unset_list = object(), []
    presets = {
        a.dest: unset_list if isinstance(a, argparse._AppendAction) else unset
        for a in parser._actions
    }
    presets.update({dest: unset for dest in parser._defaults})  # the other kind's flags
    parsed = parser.parse_args(argv, namespace=argparse.Namespace(**presets))
    return {
        name
        for name, value in vars(parsed).items()
        if value is not unset and value is not unset_list
    }


def check_combinations(args):
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
    cluster = [
        f
        for f in ("coordinator", "num_processes", "process_id")
        if getattr(args, f) is not None
    ]
    if cluster and args.distribute != "multi-worker":
        flag = "--" + cluster[0].replace("_", "-")
        raise UsageError(f"{flag} belongs to --distribute multi-worker")
    if (
        None not in (args.process_id, args.num_processes)
        and args.process_id >= args.num_processes
    ):
        raise UsageError(f"--process-id must lie in 0..{args.num_processes - 1}")
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
    """Keras' torch trainer allows only 1 step per call; its TensorFlow trainer fails with
    more under a tf.distribute strategy."""
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
        chosen = config.data or config.data_dir or config.synthetic or "dataset" in explicit
        if not chosen and config.dataset == "imdb":  # offline and at once:
            changes["synthetic"] = True  # generated reviews,
        elif not chosen:
            changes["dataset"] = "mnist-sample"  # or the shipped digits
    return config.replace(**changes)


def settle(config, compared, saved):
    """Continue a saved run: its arguments, except where `compared` names give new values.

    A new value is taken where CHANGEABLE_ON_RESUME allows it, else refused in one line.
    Returns the settled Config and the changes {name: [saved, new]}.
    """
    merged, changes = {}, {}
    for name, old in saved.items():
        if name not in config:
            raise UsageError(f"its args.json names an unknown argument {name!r}")
        new = getattr(config, name)
        if name in NOT_PART_OF_A_RUN:
            continue
        if name not in compared or new == old:
            merged[name] = old
        elif name in CHANGEABLE_ON_RESUME:
            changes[name] = [old, new]
        else:
            raise UsageError(
                f"--{name.replace('_', '-')} was {show(old)}, now {show(new)}"
            )
    missing = sorted(set(dict(config.items())) - set(saved) - NOT_PART_OF_A_RUN)
    if missing:
        raise UsageError(
            f"its args.json lacks the argument {missing[0]!r} (another script's run?)"
        )
    return config.replace(**merged), changes


def show(value):
    return "not given" if value is None else value
