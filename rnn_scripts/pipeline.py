"""run(): the pipeline every script shares, and the edge where every failure a user can
cause becomes one line.

    arguments -> backend -> processes -> run folder -> session.py (devices -> data -> model
    -> compile -> fit -> evaluate -> outputs)

Importing this module (or common.py) changes nothing: run() installs its signal handlers
and environment, and puts them back when it returns or raises. Keras is imported only once
the arguments are parsed, so --help and argument errors answer without loading a backend.
"""

import shutil
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

from . import cli, environment
from .cluster import Cluster, join_cluster
from .config import Config
from .contract import ContractError, read_contract
from .errors import (
    EXIT_FAILED,
    Interrupts,
    TrainingStopped,
    UsageError,
    UserError,
    exit_now,
    fail,
    first_line,
)
from .rundir import RunDir, script_command


@dataclass(frozen=True)
class Hooks:
    """What a script passes to run() besides build_model (see run's docstring)."""

    loss: object = None
    metrics: object = None
    optimizer: object = None
    callbacks: object = None
    class_weight: object = None


def run(
    build_model,
    reads="sequences",
    epochs=10,
    description=None,
    *,
    loss=None,
    metrics=None,
    optimizer=None,
    callbacks=None,
    class_weight=None,
    argv=None,
):
    """Parse the command line and train, evaluate and save build_model's model.

    The contract between a script and this pipeline:

    build_model(...) returns a Keras model that starts with keras.Input. Its parameters:
      - features, steps, outputs, classes, vocab_size are filled from the data: values per
        time step, time steps, output units (one per class, or per target value), the
        number of classes, the vocabulary size. Ask for the ones the model needs.
      - every other parameter needs a default, which makes it a flag of that name and
        type: units=256 -> --units 256, dropout=0.1 -> --dropout 0.1, bidirectional=False
        -> --bidirectional. A parameter with neither is a one-line error naming it.
    The model ends in Dense(outputs): logits for classes (a softmax, or a sigmoid on one
    unit, also works: the pipeline reads the output layer), values for float targets
    (trained in standardised units; the pipeline appends the layer that maps them back).

    reads: what the script takes: "sequences" (float sequences; images are read row by
    row) or "text" (texts, vectorised by TextVectorization, or word ids).
    epochs: the default of --epochs. description: the --help text (the script's docstring).

    What a template changes next, without touching the pipeline (each may be a Keras
    object, a Keras identifier string, or a function of no arguments that returns it,
    called once Keras has loaded):
      loss:         replaces the loss (default: cross-entropy, or mean squared error)
      metrics:      added to accuracy (or MAE and RMSE)
      optimizer:    replaces --optimizer: a class or function taking learning_rate= and
                    clipnorm= (e.g. keras.optimizers.AdamW), or its name ("adamw")
      callbacks:    added to the pipeline's Keras callbacks
      class_weight: {class name or id: weight}, or "balanced" (also --class-weight)
    argv: the command line to parse (default sys.argv[1:]; a notebook passes its own).
    """
    hooks = Hooks(loss, metrics, optimizer, callbacks, class_weight)
    as_script = run_as_a_script(build_model)
    module = getattr(build_model, "__module__", None) or "run"
    script = Path(sys.argv[0]).name if as_script else f"{module}.py"
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    defaults = cli.ScriptDefaults(epochs, optimizer is not None, class_weight is not None)
    with Interrupts.installed(), environment.restored():
        guarded(build_model, reads, description, hooks, defaults, script, argv, as_script)


def run_as_a_script(build_model):
    """Whether build_model belongs to the program being run as a file (a script, under
    whatever name its author gave it), not to a notebook or a module that calls run()."""
    main = sys.modules["__main__"]
    return getattr(build_model, "__module__", None) == "__main__" and hasattr(main, "__file__")


def guarded(build_model, reads, description, hooks, defaults, script, argv, as_script):
    """start(), with every failure a user can cause turned into one line and an exit code."""
    state = {"run_dir": None, "cluster": Cluster(), "config": None}
    message = None
    try:
        start(build_model, reads, description, hooks, defaults, script, argv, as_script, state)
    except TrainingStopped as stop:
        message, code = f"{stop}; {hint(state, script, stop)}", stop.exit_code
    except UserError as error:
        message, code = f"error: {error}", error.exit_code
    except OSError as error:
        message = f"error: {describe_os_error(error)}; {hint(state, script)}"
        code = EXIT_FAILED
    except Exception as error:
        if Interrupts.pending:  # a library failed while a signal was stopping the run
            stop = TrainingStopped(*Interrupts.MEANING[Interrupts.pending])
            message, code = f"{stop}; {hint(state, script, stop)}", stop.exit_code
        else:
            message, code = one_line_for(error, state), EXIT_FAILED
            if message is None and state["cluster"].count == 1:
                raise
            if message is None:  # a traceback, but no wait for the others at exit
                traceback.print_exc()
                message = "error: this process failed (above); the other processes stop too"
    finally:
        if state["run_dir"] is not None:  # the lock goes; a refused start leaves nothing
            state["run_dir"].abandon()
        state["cluster"].release()
        if "temporary" in state:
            shutil.rmtree(state["temporary"], ignore_errors=True)
    # With several processes, exit at once: JAX's exit handler would wait for the others.
    hard = state["cluster"].count > 1
    if message is not None:
        fail(message, code, hard=hard)
    if hard:
        exit_now(0)


def start(
    build_model, reads, description, hooks, defaults, script, argv, as_script, state
):
    try:
        contract = read_contract(build_model, reads, cli.reserved_names())
    except ContractError as error:
        fail(f"{script}: error: {error}", EXIT_FAILED)
    config, explicit = cli.parse_arguments(script, description, contract, defaults, argv)
    backend = backend_of(config)
    environment.prepare(backend, config, as_script)
    config = config.replace(backend=backend)
    state["config"] = config
    Interrupts.mode = "raise"
    state["cluster"] = cluster = join_cluster(config)
    if not cluster.is_writer:  # one console speaks for the run; errors still show
        sys.stdout = environment.Forgiving(None)
    run_dir, config, changes = open_run_dir(
        config, explicit, script, argv, cluster, state
    )
    from . import session

    session.train_and_evaluate(
        build_model, contract, hooks, config, run_dir, changes, cluster, script, argv
    )


def backend_of(config):
    """--backend, or for --resume DIR the backend DIR's run started with."""
    backend = config.backend
    if config.resume is not None:
        saved = RunDir(config.resume).saved_arguments()["arguments"]
        backend = saved.get("backend", backend)
    if backend not in cli.BACKENDS:
        raise UsageError(
            f"KERAS_BACKEND={backend!r} is not one of {', '.join(cli.BACKENDS)}"
        )
    return backend


# --------------------------------------------------------------------------------------
# The run folder: claimed by process 0, followed by the others
# --------------------------------------------------------------------------------------
def open_run_dir(config, explicit, script, argv, cluster, state):
    """Process 0 claims the run's folder and settles the arguments of a run that continues
    there; the other processes of a multi-process run follow what it wrote."""
    failure, claimed = None, None
    if cluster.is_writer:
        try:
            claimed = claim_run_dir(config, explicit, script, argv, state)
        except UserError as error:
            failure = error
    if cluster.agree(failure is not None):  # everyone stops if process 0 could not start
        raise failure or UserError(
            "process 0 could not start the run (its output says why)"
        )
    return claimed or follow_run_dir(config, explicit)


def claim_run_dir(config, explicit, script, argv, state):
    if config.resume is not None:
        RunDir(config.resume).saved_arguments()  # one line if there is no run to resume
        config = config.replace(output_dir=config.resume)
    if config.output_dir:
        run_dir = RunDir(config.output_dir)
    elif config.smoke:  # a check, not a run to keep: gone when run() returns
        state["temporary"] = Path(tempfile.mkdtemp(prefix="rnn-scripts-smoke-"))
        run_dir = RunDir.new(Path(script).stem, parent=state["temporary"])
        run_dir.temporary = True
    else:
        run_dir = RunDir.new(Path(script).stem)
    run_dir.created |= state["cluster"].created_folder  # made by joining the processes
    state["run_dir"] = run_dir
    config = config.replace(output_dir=run_dir.path)
    run_dir.claim(config.overwrite, script_command(argv), script)
    if config.resume is None and not run_dir.has_unfinished_run():
        return run_dir, config, {}
    saved = run_dir.saved_arguments()
    config, changes = settle(config, explicit, saved["arguments"], run_dir)
    return run_dir, config, changes


def follow_run_dir(config, explicit):
    run_dir = RunDir(config.resume or config.output_dir, writer=False)
    config = config.replace(output_dir=run_dir.path)
    if config.resume is None and not run_dir.has_unfinished_run():
        return run_dir, config, {}
    config, changes = settle(
        config, explicit, run_dir.saved_arguments()["arguments"], run_dir
    )
    return run_dir, config, changes


def settle(config, explicit, saved, run_dir):
    """Take a continuing run's saved arguments (changes where allowed) into the Config."""
    compared = explicit if config.resume is not None else set(dict(config.items()))
    try:
        return cli.settle(config, compared, dict(Config.from_json(saved).items()))
    except UsageError as error:
        raise UsageError(refusal(run_dir, config, error)) from None


def refusal(run_dir, config, error):
    if config.resume is not None:
        allowed = ", ".join(
            f"--{n.replace('_', '-')}" for n in sorted(cli.CHANGEABLE_ON_RESUME)
        )
        return (
            f"--resume continues {run_dir} with its saved arguments ({error}); "
            f"only {allowed} may change"
        )
    return (
        f"{run_dir} holds an unfinished run started with other arguments ({error}); "
        f"continue it with --resume {run_dir}, or start again with --overwrite"
    )


# --------------------------------------------------------------------------------------
# The edge: every failure a user can cause becomes one line
# --------------------------------------------------------------------------------------
def hint(state, script, stop=None):
    run_dir, config, cluster = state["run_dir"], state["config"], state["cluster"]
    if run_dir is None:
        return "nothing was written"
    advice = run_dir.resume_hint(script)
    if cluster.count > 1 and run_dir.latest_epoch():
        advice = (
            advice.split(";")[0] + "; resume: start every process again with its command"
        )
    if stop is not None and stop.exit_code == EXIT_FAILED:  # a non-finite loss
        lower = f"--learning-rate {config.learning_rate / 2:g} --clipnorm 1.0"
        if run_dir.latest_epoch():
            return f"{advice} {lower} (a lower learning rate, clipped gradients)"
        return f"{advice}; try {lower} (a lower learning rate, clipped gradients)"
    return advice


def describe_os_error(error):
    where = f" {error.filename}" if error.filename else ""
    return f"could not write{where}: {error.strerror or first_line(error)}"


def one_line_for(error, state):
    """One line for a library's error a user can cause, or None (then a traceback)."""
    config, cluster = state["config"], state["cluster"]
    text = f"{type(error).__name__} {error}"
    if (
        "use_cudnn=True" in text
    ):  # Keras refuses use_cudnn=True for this model and backend
        return (
            "error: --use-cudnn true: Keras has no cuDNN kernel for this model on the "
            f"{config.backend} backend (masked or unsupported layer); use --use-cudnn auto"
        )
    if isinstance(error, MemoryError) or any(
        s in text
        for s in ("RESOURCE_EXHAUSTED", "out of memory", "OutOfMemory", "OOM when")
    ):
        return (
            f"error: out of memory at --batch-size {config.batch_size} ({first_line(error, 120)}); "
            "try a smaller --batch-size or a smaller model"
        )
    if cluster.count > 1 and any(
        s in text for s in ("Gloo", "Connection", "DEADLINE", "UNAVAILABLE")
    ):
        lost = cluster.lost()
        who = f"process {', '.join(map(str, lost))}" if lost else "another process"
        return (
            f"error: lost contact with {who} of this run ({first_line(error, 100)}); "
            "start every process again to resume"
        )
    return None
