"""New run, resume, or refuse; and what a continuing run restores. Like Keras' own
BackupAndRestore, the whole story in one file:

- A run folder with no run, or a finished one (--overwrite), gets a new run. A folder
  that holds an unfinished run of the same script and arguments continues it: the same
  command, or --resume DIR, which takes DIR's saved arguments (args.json). A finished run
  continues too, with --resume DIR --epochs N beyond its epochs (it keeps its last
  state).
- What may change on resume is CHANGEABLE_ON_RESUME; any other difference is refused in
  one line naming it. The changes are recorded in args.json.
- What is restored is the newest saved epoch that reads back (rundir keeps two): weights,
  optimizer state and Progress (history rows, best epoch and score, early stopping, the
  plateau's counters), after checking that it is the same model (architecture) on the
  same data (fingerprint).
"""

from .config import Config
from .errors import UsageError, UserError, say
from .rundir import DamagedState, RunDir, read_state, script_command

# Flags that may differ when a run continues: they change neither the data, the model nor
# the batches, and are recorded in args.json. The data's paths may change (a moved file):
# the data's fingerprint guards their content.
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


def backend_of(config, backends):
    """--backend, or for --resume DIR the backend DIR's run started with."""
    backend = config.backend
    if config.resume is not None:
        backend = (
            RunDir(config.resume).saved_arguments()["arguments"].get("backend", backend)
        )
    if backend not in backends:
        raise UsageError(
            f"KERAS_BACKEND={backend!r} is not one of {', '.join(backends)}"
        )
    return backend


# --------------------------------------------------------------------------------------
# The decision: claimed by process 0, followed by the others
# --------------------------------------------------------------------------------------
def open_run_dir(run):
    """Process 0 claims the run's folder and settles the arguments of a run that
    continues there; the other processes of a multi-process run follow what it wrote.
    Sets run.run_dir, run.config and run.changes."""
    failure = None
    if run.cluster.is_writer:
        try:
            claim(run)
        except UserError as error:
            failure = error
    if run.cluster.agree(failure is not None):  # everyone stops if process 0 could not
        raise failure or UserError(
            "process 0 could not start the run (its output says why)"
        )
    if not run.cluster.is_writer:
        follow(run)


def claim(run):
    config = run.config
    if config.resume is not None:
        RunDir(config.resume).saved_arguments()  # one line if there is no run to resume
        config = config.replace(output_dir=config.resume)
    run.run_dir = run_dir = run.new_run_dir(config)
    config = config.replace(output_dir=run_dir.path)
    run_dir.claim(
        config.overwrite, script_command(run.argv), run.script, extending=config.resume
    )
    run.config = config
    if config.resume is not None and run_dir.is_finished():
        extend_finished_run(run)
    elif config.resume is not None or run_dir.has_unfinished_run():
        settle(run)


def follow(run):
    run.run_dir = run_dir = RunDir(
        run.config.resume or run.config.output_dir, writer=False
    )
    run.config = run.config.replace(output_dir=run_dir.path)
    if run.config.resume is not None or run_dir.has_unfinished_run():
        settle(run)


def extend_finished_run(run):
    """--resume DIR --epochs N on a finished run: it continues from its last state, which
    a finished run keeps; its outputs are written again at the end."""
    run_dir, config = run.run_dir, run.config
    done = run_dir.latest_epoch()
    metrics = run_dir.read_metrics()
    if metrics.get("stopped_early_at_epoch"):
        raise UsageError(
            f"{run_dir} stopped early at epoch {done}; there is nothing to extend"
        )
    if "epochs" not in run.explicit or config.epochs <= done or not done:
        raise UsageError(
            f"{run_dir} holds a finished run of {done} epoch(s); --resume {run_dir} "
            f"--epochs N (more than {done}) continues it, --overwrite starts it again"
        )
    settle(run)
    run_dir.reopen()  # unfinished again until its outputs are written


def settle(run):
    """Take a continuing run's saved arguments into the Config: a new value where
    CHANGEABLE_ON_RESUME allows it (run.changes: {name: [saved, new]}), else one line."""
    config, saved = run.config, run.run_dir.saved_arguments()["arguments"]
    compared = run.explicit if config.resume is not None else set(dict(config.items()))
    merged, changes = {}, {}
    try:
        for name, old in Config.from_json(saved).items():
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
                    f"--{name.replace('_', '-')} was {shown(old)}, now {shown(new)}"
                )
        missing = sorted(set(dict(config.items())) - set(saved) - NOT_PART_OF_A_RUN)
        if missing:
            raise UsageError(
                f"its args.json lacks the argument {missing[0]!r} (another script's "
                "run?)"
            )
    except UsageError as error:
        raise UsageError(refusal(run.run_dir, config, error)) from None
    run.config, run.changes = config.replace(**merged), changes


def shown(value):
    return "not given" if value is None else value


def refusal(run_dir, config, error):
    if config.resume is not None:
        allowed = ", ".join(
            f"--{n.replace('_', '-')}" for n in sorted(CHANGEABLE_ON_RESUME)
        )
        saved = f"--resume continues {run_dir} with its saved arguments ({error})"
        return f"{saved}; only {allowed} may change"
    return (
        f"{run_dir} holds an unfinished run started with other arguments ({error}); "
        f"continue it with --resume {run_dir}, or start again with --overwrite"
    )


def record_arguments(run):
    """args.json: written when a run starts, again with what changed when it resumes."""
    run_dir, config = run.run_dir, run.config
    if run_dir.writer and not run.changes and not run_dir.has_unfinished_run():
        run_dir.save_arguments(run.script, config.to_json(), run.argv, [])
    elif run_dir.writer and run.changes:
        saved = run_dir.saved_arguments()
        change = {"after_epoch": run_dir.latest_epoch(), "changed": run.changes}
        earlier = saved.get("changes", []) + [change]
        run_dir.save_arguments(
            run.script, config.to_json(), saved.get("argv", run.argv), earlier
        )
    if run.cluster.count > 1:
        run.cluster.agree(0)  # process 0 has written args.json
        if not (run_dir.path / "args.json").is_file():
            raise UserError(
                f"{run_dir} holds no args.json from process 0: --output-dir must be on "
                "storage that every process sees"
            )


# --------------------------------------------------------------------------------------
# What is restored
# --------------------------------------------------------------------------------------
class Progress:
    """What a run has done so far; saved with every finished epoch and restored on
    resume."""

    def __init__(self, meta=None):
        meta = meta or {}
        self.rows = meta.get("rows", [])
        self.best, self.best_epoch = meta.get("best"), meta.get("best_epoch", 0)
        self.stopped_early = meta.get("stopped_early")
        self.plateau = meta.get("plateau")
        self.learning_rate_argument = meta.get("learning_rate_argument")
        self.restored_epoch = len(self.rows)

    @property
    def epochs_done(self):
        return len(self.rows)

    def meta(self, run, plateau):
        """What a saved epoch holds besides weights and optimizer state."""
        return {
            "rows": self.rows,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
            "plateau": plateau,
            "fingerprint": run.fingerprint,
            "architecture": run.architecture,
            # a --learning-rate given on resume replaces the restored one
            "learning_rate_argument": run.config.learning_rate,
        }


def restore(model, run):
    """Weights, optimizer state and Progress of the newest saved epoch that reads back
    (the one before, with a line saying so, if the newest is damaged); a fresh
    Progress if there is none. A --learning-rate given on resume replaces the restored
    one."""
    run_dir, states = run.run_dir, run.run_dir.states()
    for path in states:
        try:
            weights, optimizer_values, meta = read_state(path)
            if meta.get("architecture") not in (None, run.architecture):
                raise UserError(
                    f"{run_dir} holds a run of another model (build_model or its flags "
                    "differ from the ones it started with); continue it with the "
                    "script that started it, or choose another --output-dir"
                )
            assign(model, weights, optimizer_values)
        except (DamagedState, ValueError) as error:
            say(
                f"warning: {path} cannot be used ({str(error)[:150]}); trying the "
                "epoch before"
            )
            continue
        if (
            meta.get("fingerprint") != run.fingerprint
            and not run.config.allow_data_change
        ):
            raise UserError(
                f"{run_dir} was trained on other data than these (their fingerprint "
                "differs); pass --allow-data-change to continue anyway"
            )
        progress = Progress(meta)
        changed_rate = progress.learning_rate_argument not in (
            None,
            run.config.learning_rate,
        )
        if changed_rate and run.config.lr_schedule != "cosine":
            model.optimizer.learning_rate = run.config.learning_rate
        report(run, progress)
        return progress
    if states:
        raise UserError(
            f"no saved epoch in {run_dir}/training-state can be read; start again with "
            "--overwrite"
        )
    return Progress()


def assign(model, weights, optimizer_values):
    """Copy saved weights and optimizer variables into the freshly built model."""
    model.set_weights(weights)
    model.optimizer.build(model.trainable_variables)
    variables = model.optimizer.variables
    if len(variables) != len(optimizer_values):
        raise ValueError("the optimizer state does not fit this model")
    for variable, value in zip(variables, optimizer_values):
        variable.assign(value)


def optimizer_values(model):
    import keras

    return [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]


def report(run, progress):
    done = progress.epochs_done
    say(
        f"resuming {run.run_dir} after epoch {done} (weights and optimizer state "
        "restored)"
    )
    for name, (old, new) in run.changes.items():
        say(f"  --{name.replace('_', '-')} changed from {old} to {new}")
