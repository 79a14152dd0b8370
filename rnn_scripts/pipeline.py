"""run(): the pipeline every script shares, and the edge where every failure a user can
cause becomes one line.

    arguments -> backend -> processes -> run folder (resume.py: new, resume or refuse)
    -> devices -> data -> model -> compile -> fit -> evaluate -> outputs

One Run carries what a run knows as the stages go. Importing this module (or common.py)
changes nothing: run() installs its signal handlers, environment and speed-ups, and puts
them (and Keras' dtype policy and distribution) back when it returns or raises. Keras is
imported only once the arguments are parsed, so --help and argument errors answer without
loading a backend.
"""

import shutil
import sys
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from . import cli, environment, resume
from .cluster import Cluster, join_cluster
from .config import Config
from .contract import ContractError, read_contract
from .errors import (
    EXIT_FAILED,
    Interrupts,
    TrainingStopped,
    UserError,
    exit_now,
    fail,
    first_line,
)
from .rundir import RunDir


@dataclass(frozen=True)
class Hooks:
    """What a script passes to run() besides build_model (see run's docstring)."""

    loss: object = None
    metrics: object = None
    optimizer: object = None
    callbacks: object = None
    class_weight: object = None


@dataclass
class Run:
    """One run: what the script passed, the command line's configuration, the processes
    and the folder, then (once Keras has loaded) the distribution and what the epoch loop
    keeps. The stages fill it in; the error edge reads it to say what was kept."""

    build_model: object
    reads: str
    description: str
    hooks: Hooks
    defaults: cli.ScriptDefaults
    script: str
    argv: list
    as_script: bool
    contract: object = None
    config: Config = None
    explicit: set = field(default_factory=set)
    cluster: Cluster = field(default_factory=Cluster)
    run_dir: RunDir = None
    changes: dict = field(default_factory=dict)
    temporary: Path = None
    distribution: object = None
    regression: bool = False
    fingerprint: str = None
    architecture: str = None
    best_weights: list = None

    def new_run_dir(self, config):
        """--output-dir, or runs/SCRIPT-TIME (a --smoke run's in a temporary folder)."""
        if config.output_dir:
            run_dir = RunDir(config.output_dir)
        elif config.smoke:  # a check, not a run to keep: gone when run() returns
            self.temporary = Path(tempfile.mkdtemp(prefix="rnn-scripts-smoke-"))
            run_dir = RunDir.new(Path(self.script).stem, parent=self.temporary)
            run_dir.temporary = True
        else:
            run_dir = RunDir.new(Path(self.script).stem)
        run_dir.created |= self.cluster.created_folder  # made by joining the processes
        return run_dir

    # ---- what the epoch loop calls (training.KeepProgress) --------------------------
    def check_signals(self):
        """Stop on a signal; with several processes, all of them stop at the same step
        when any one was signalled (a collective: every process calls it)."""
        Interrupts.check(self.cluster.agree(Interrupts.pending or 0))

    def save_best(self, model):
        from . import devices, training

        if self.run_dir.writer:
            with devices.without_distribution():
                self.run_dir.save_model(training.portable_copy(model), "best.keras")

    def save_epoch(self, model, meta):
        """The state first: a history row without its state would be trained again."""
        from . import outputs

        if self.run_dir.writer:
            weights, state = model.get_weights(), resume.optimizer_values(model)
            self.run_dir.save_state(len(meta["rows"]), weights, state, meta)
            outputs.write_history(self.run_dir, meta["rows"], meta["best_epoch"])


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

    build_model(...) returns a Keras model that starts with one keras.Input. Its
    parameters:
      - features, steps, outputs, classes, vocab_size are filled from the data: values
        per time step, time steps, output units (one per class, or per target value), the
        number of classes, the vocabulary size. Ask for the ones the model needs.
      - every other parameter needs a default, which makes it a flag of that name and
        type (the annotation's where there is one): units=256 -> --units 256, dropout=0.1
        -> --dropout 0.1, bidirectional=False -> --bidirectional, l2: float | None = None
        -> --l2 (a number). A parameter with neither is a one-line error.
    The model ends in Dense(outputs): logits for classes (a softmax, or a sigmoid on one
    unit, also works: the pipeline reads the output layer), values for float targets
    (trained in standardised units; the pipeline appends the layer that maps them back).

    reads: what the script takes: "sequences" (float sequences; images are read row by
    row) or "text" (texts, vectorised by TextVectorization, or word ids). epochs: the
    default of --epochs. description: the --help text (the script's docstring).

    What a template changes next, without touching the pipeline (each may be a Keras
    object, a Keras identifier string, or a function of no arguments that returns it,
    called once Keras has loaded; a wrong one is a one-line error at start-up):
      loss:         replaces the loss (default: cross-entropy, or mean squared error)
      metrics:      added to accuracy (or MAE and RMSE) optimizer:    replaces
      --optimizer: a class or function taking learning_rate= and
                    clipnorm= (e.g. keras.optimizers.AdamW), an optimizer object, or a
                    name
      callbacks:    added to the pipeline's Keras callbacks class_weight: {class name or
      id: weight}, or "balanced" (also --class-weight)
    argv: the command line to parse (default sys.argv[1:]; a notebook passes its own).
    """
    as_script = run_as_a_script(build_model)
    module = getattr(build_model, "__module__", None) or "run"
    script = Path(sys.argv[0]).name if as_script else f"{module}.py"
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    defaults = cli.ScriptDefaults(
        epochs, optimizer is not None, class_weight is not None
    )
    hooks = Hooks(loss, metrics, optimizer, callbacks, class_weight)
    state = Run(
        build_model, reads, description, hooks, defaults, script, argv, as_script
    )
    with Interrupts.installed(), environment.restored():
        guarded(state)


def run_as_a_script(build_model):
    """Whether build_model belongs to the program being run as a file (a script, under
    whatever name its author gave it), not to a notebook or a module that calls run()."""
    main = sys.modules["__main__"]
    return getattr(build_model, "__module__", None) == "__main__" and hasattr(
        main, "__file__"
    )


def guarded(run):
    """start(), with every failure a user can cause turned into one line and an exit
    code."""
    message = None
    try:
        start(run)
    except TrainingStopped as stop:
        message, code = f"{stop}; {hint(run, stop)}", stop.exit_code
    except UserError as error:
        message, code = f"error: {error}", error.exit_code
    except OSError as error:
        message, code = f"error: {describe_os_error(error)}; {hint(run)}", EXIT_FAILED
    except Exception as error:
        if Interrupts.pending:  # a library failed while a signal was stopping the run
            stop = TrainingStopped(*Interrupts.MEANING[Interrupts.pending])
            message, code = f"{stop}; {hint(run, stop)}", stop.exit_code
        else:
            message, code = one_line_for(error, run), EXIT_FAILED
            if message is None and run.cluster.count == 1:
                raise
            if message is None:  # a traceback, but no wait for the others at exit
                traceback.print_exc()
                message = (
                    "error: this process failed (above); the other processes stop too"
                )
    finally:
        if run.run_dir is not None:  # the lock goes; a refused start leaves nothing
            run.run_dir.abandon()
        run.cluster.release()
        if run.temporary is not None:
            shutil.rmtree(run.temporary, ignore_errors=True)
    # With several processes, exit at once: JAX's exit handler would wait for the others.
    hard = run.cluster.count > 1
    if message is not None:
        fail(message, code, hard=hard)
    if hard:
        exit_now(0)


def start(run):
    """Before Keras: the contract, arguments, backend, processes and folder."""
    try:
        run.contract = read_contract(run.build_model, run.reads, cli.reserved_names())
    except ContractError as error:
        fail(f"{run.script}: error: {error}", EXIT_FAILED)
    config, run.explicit = cli.parse_arguments(
        run.script, run.description, run.contract, run.defaults, run.argv
    )
    backend = resume.backend_of(config, cli.BACKENDS)
    environment.prepare(backend, config, run.as_script)
    run.config = config.replace(backend=backend)
    Interrupts.mode = "raise"
    run.cluster = join_cluster(run.config)
    if not run.cluster.is_writer:  # one console speaks for the run; errors still show
        sys.stdout = environment.Forgiving(None)
    resume.open_run_dir(run)
    from . import stages

    stages.train_and_evaluate(run)


# --------------------------------------------------------------------------------------
# The edge: every failure a user can cause becomes one line
# --------------------------------------------------------------------------------------
def hint(run, stop=None):
    run_dir, config = run.run_dir, run.config
    if run_dir is None:
        return "nothing was written"
    advice = run_dir.resume_hint(run.script)
    if run.cluster.count > 1 and run_dir.latest_epoch():
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


def one_line_for(error, run):
    """One line for a library's error a user can cause, or None (then a traceback)."""
    config, cluster = run.config, run.cluster
    text = f"{type(error).__name__} {error}"
    if (
        "use_cudnn=True" in text
    ):  # Keras refuses use_cudnn=True for this model and backend
        return (
            "error: --use-cudnn true: Keras has no cuDNN kernel for this model on the "
            f"{config.backend} backend (masked or unsupported layer); use --use-cudnn "
            "auto"
        )
    memory = ("RESOURCE_EXHAUSTED", "out of memory", "OutOfMemory", "OOM when")
    if isinstance(error, MemoryError) or any(s in text for s in memory):
        return (
            f"error: out of memory at --batch-size {config.batch_size} "
            f"({first_line(error, 120)}); try a smaller --batch-size or a smaller model"
        )
    lost = ("Gloo", "Connection", "DEADLINE", "UNAVAILABLE")
    if cluster.count > 1 and any(s in text for s in lost):
        processes = cluster.lost()
        who = (
            f"process {', '.join(map(str, processes))}"
            if processes
            else "another process"
        )
        return (
            f"error: lost contact with {who} of this run ({first_line(error, 100)}); "
            "start every process again to resume"
        )
    return None
