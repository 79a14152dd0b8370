"""The pipeline every rnn-scripts script shares.

arguments -> devices -> data -> model -> compile -> fit -> evaluate -> outputs

A script imports this module *before* Keras (the backend, the signal handlers and the log
settings must be in place when Keras loads), defines `build_model(...)` and calls
`run(build_model, epochs=N)`. Each stage lives in the rnn_scripts package beside this file;
copy a script next to the others and it needs nothing but this one import.
"""

import sys

from rnn_scripts import environment

environment.prepare(sys.argv[1:])

import importlib.util  # noqa: E402
import inspect  # noqa: E402
import os  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402

from rnn_scripts import cli, devices, outputs, training  # noqa: E402
from rnn_scripts.data import load_data  # noqa: E402
from rnn_scripts.devices import EVAL_BATCH_SIZE  # noqa: E402
from rnn_scripts.errors import (  # noqa: E402
    EXIT_FAILED,
    Interrupts,
    TrainingStopped,
    UsageError,
    UserError,
    exit_now,
    fail,
    first_line,
)
from rnn_scripts.preprocess import SPEC_FILE, Preprocessing  # noqa: E402
from rnn_scripts.rundir import METRICS_FILE, RunDir, script_command  # noqa: E402


def run(build_model, epochs=10, description=None):
    """Parse the command line and run the whole pipeline for one script's model."""
    script, argv = Path(sys.argv[0]).name, sys.argv[1:]
    defaults = script_defaults(build_model, epochs)
    args, explicit = cli.parse_arguments(script, description, defaults, argv)
    run_dir, cluster = None, devices.Cluster()
    try:
        Interrupts.mode = "raise"
        cluster = devices.join_cluster(args)
        if not cluster.is_writer:  # one console speaks for the run; errors still show
            sys.stdout = open(os.devnull, "w")
        run_dir, changes = open_run_dir(args, explicit, script, argv, cluster)
        pipeline(build_model, args, run_dir, changes, cluster)
        if cluster.count == 1 and run_as_a_script(build_model):
            run_dir.release()
            exit_now(0)  # skip Python's teardown (about 1 s freeing TensorFlow's objects)
        return
    except UserError as error:
        message, code = f"error: {error}", error.exit_code
    except TrainingStopped as stop:
        message, code = f"{stop}; {hint(run_dir, script, stop, args, cluster)}", stop.exit_code
    except OSError as error:
        message, code = f"error: {describe_os_error(error)}; {hint(run_dir, script, cluster=cluster)}", EXIT_FAILED
    except Exception as error:
        message, code = one_line_for(error, args, cluster), EXIT_FAILED
        if message is None and cluster.count == 1:
            raise
        if message is None:  # a traceback, but no wait for the others at exit
            traceback.print_exc()
            message = "error: this process failed (above); the other processes stop too"
    finally:
        if run_dir is not None:
            run_dir.release()
    # With several processes, exit at once: JAX's exit handler would wait for the others.
    fail(message, code, hard=cluster.count > 1)


def run_as_a_script(build_model):
    """Whether the program is the script that defined build_model (not a notebook or a
    test calling run(), which must get control back)."""
    main = sys.modules["__main__"]
    return hasattr(main, "__file__") and getattr(main, "build_model", None) is build_model


def script_defaults(build_model, epochs):
    """The script's defaults: build_model's signature, and the epochs run() was given."""
    parameters = inspect.signature(build_model).parameters
    defaults = {name: p.default for name, p in parameters.items() if p.default is not p.empty}
    defaults["epochs"] = epochs
    return defaults


def open_run_dir(args, explicit, script, argv, cluster):
    """Process 0 claims the run's folder and settles the arguments of a run that continues
    there; the other processes of a multi-process run follow what it wrote."""
    failure, claimed = None, None
    if cluster.is_writer:
        try:
            claimed = claim_run_dir(args, explicit, script, argv)
        except UserError as error:
            failure = error
    if cluster.agree(failure is not None):  # everyone stops if process 0 could not start
        raise failure or UserError("process 0 could not start the run (its output says why)")
    return claimed or follow_run_dir(args, explicit)


def claim_run_dir(args, explicit, script, argv):
    if args.resume is not None:
        RunDir(args.resume).saved_arguments()  # one line if there is no run to resume
        args.output_dir = args.resume
    run_dir = RunDir(args.output_dir) if args.output_dir else RunDir.new(Path(script).stem)
    args.output_dir = run_dir.path
    run_dir.claim(args.overwrite, script_command(argv))
    if args.resume is None and not run_dir.has_unfinished_run():
        run_dir.save_arguments(cli.to_json(args), argv, [])
        return run_dir, {}
    saved = run_dir.saved_arguments()
    changes = settle(args, explicit, saved, run_dir)
    earlier = saved.get("changes", [])
    if changes:
        earlier.append({"after_epoch": run_dir.latest_epoch(), "changed": changes})
    run_dir.save_arguments(cli.to_json(args), saved.get("argv", argv), earlier)
    return run_dir, changes


def follow_run_dir(args, explicit):
    run_dir = RunDir(args.resume or args.output_dir, writer=False)
    args.output_dir = run_dir.path
    if not (run_dir.path / "args.json").is_file():
        raise UserError(
            f"{run_dir} holds no args.json from process 0: --output-dir must be on "
            "storage that every process sees"
        )
    if args.resume is None and not run_dir.has_unfinished_run():
        return run_dir, {}
    return run_dir, settle(args, explicit, run_dir.saved_arguments(), run_dir)


def settle(args, explicit, saved, run_dir):
    """Take a continuing run's saved arguments (changes where allowed) into args."""
    compared = explicit if args.resume is not None else set(vars(args))
    try:
        merged, changes = cli.settle(args, compared, cli.from_json(saved["arguments"]))
    except UsageError as error:
        raise UsageError(refusal(run_dir, args, error))
    vars(args).update(vars(merged))
    return changes


def refusal(run_dir, args, error):
    if args.resume is not None:
        allowed = ", ".join(f"--{n.replace('_', '-')}" for n in sorted(cli.CHANGEABLE_ON_RESUME))
        return (
            f"--resume continues {run_dir} with its saved arguments ({error}); "
            f"only {allowed} may change"
        )
    return (
        f"{run_dir} holds an unfinished run started with other arguments ({error}); "
        f"continue it with --resume {run_dir}, or start again with --overwrite"
    )


# --------------------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------------------
class Run:
    """One run's context for the epoch loop: folder, arguments, distribution. Only the
    writing process writes (run_dir.writer)."""

    def __init__(self, args, run_dir, distribution, fingerprint):
        self.args, self.run_dir, self.distribution = args, run_dir, distribution
        self.fingerprint, self.best_weights = fingerprint, None
        if args.tensorboard and importlib.util.find_spec("tensorboard") is None:
            raise UserError("--tensorboard needs the tensorboard package: pip install tensorboard")

    def check_signals(self):
        """Stop on a signal; with several processes, all of them stop at the same step
        when any one was signalled (a collective: every process calls it)."""
        Interrupts.check(self.distribution.cluster.agree(Interrupts.pending or 0))

    def save_best(self, model):
        if self.run_dir.writer:
            with devices.without_distribution():
                self.run_dir.save_model(training.portable_copy(model), "best.keras")

    def save_epoch(self, model, meta):
        """The state first: a history row without its state would be trained again."""
        run_dir = self.run_dir
        if not run_dir.writer:
            return
        run_dir.save_state(
            len(meta["rows"]), model.get_weights(), training.optimizer_values(model), meta
        )
        run_dir.write_text("history.csv", outputs.history_csv(meta["rows"]))
        run_dir.write("curves.png", lambda path: outputs.plot_curves(meta["rows"], path))

    def extra_callbacks(self):
        if not (self.args.tensorboard and self.run_dir.writer):
            return []
        log_dir = str(self.run_dir.path / "logs")
        return [training.FlushedTensorBoard(log_dir, write_graph=False, profile_batch=0)]


def pipeline(build_model, args, run_dir, changes, cluster):
    device = devices.setup_devices(args)
    distribution = devices.choose_distribution(args, cluster)
    report_backend(device, distribution, args)
    data, preprocessing = prepare_data(args, run_dir, wants_tokens(build_model))
    run = Run(args, run_dir, distribution, data.fingerprint())
    with distribution.scope():
        options = {**model_arguments(args), **preprocessing.model_options()}
        model = training.build(build_model, options)
        steps = -(-len(data.x_train) // args.batch_size)
        training.compile_model(model, args, steps)
        progress = training.restore(model, run_dir, run.fingerprint, args.allow_data_change)
    if -cluster.agree(-progress.epochs_done) != cluster.agree(progress.epochs_done):
        raise UserError(f"the processes found different saved epochs in {run_dir}: it must be shared storage")
    if progress.learning_rate_argument not in (None, args.learning_rate) and args.lr_schedule != "cosine":
        model.optimizer.learning_rate = args.learning_rate  # --learning-rate given on resume
    report_resume(run_dir, progress, changes)
    note = devices.faster_backend_note(model.name, model.count_params(), keras.backend.backend(), device)
    if note:
        print(note)
    model.summary()
    Interrupts.mode = "defer"
    train_examples = training.train(model, data, args, run, progress, distribution)
    finish(model, data, preprocessing, progress, run, train_examples, device)


def wants_tokens(build_model):
    return "vocab_size" in inspect.signature(build_model).parameters


def model_arguments(args):
    options = {"units": args.units}
    options["use_cudnn"] = {"auto": "auto", "true": True, "false": False}[args.use_cudnn]
    if hasattr(args, "num_layers"):
        options["num_layers"] = args.num_layers
    return options


def report_backend(device, distribution, args):
    backend = keras.backend.backend()
    replicas = ""
    if distribution.replicas > 1:
        replicas = f", {distribution.replicas} replicas, global batch {args.batch_size}"
    version = devices.backend_version(backend)
    print(f"backend {backend} {version} (Keras {keras.__version__}) on {device}{replicas}")


def prepare_data(args, run_dir, tokens):
    """Load, limit and split the data; fit the preprocessing on the training rows (or take
    the one a resumed run saved) and apply it to every split."""
    data = load_data(args, tokens)
    if (run_dir.path / SPEC_FILE).is_file() and run_dir.has_unfinished_run():
        preprocessing = Preprocessing.load(run_dir.path)
    else:
        preprocessing = Preprocessing.fit(
            data, getattr(args, "max_length", None), vocabulary_limit(args, data)
        )
        preprocessing.save(run_dir)
    preprocessing.apply_to(data)
    kind = " (synthetic)" if data.synthetic else ""
    print(
        f"data {data.name}{kind}: {len(data.x_train)} train, {len(data.x_val)} validation, "
        f"{len(data.x_test)} test examples of shape {data.x_train.shape[1:]} "
        f"in {len(data.class_names)} classes from {data.source}"
    )
    return data, preprocessing


def vocabulary_limit(args, data):
    """--vocab-size caps IMDB's words and the words kept from a .csv; a .npz of word ids
    brings its own vocabulary."""
    if data.kind == "tokens" and args.data is not None:
        return None
    return getattr(args, "vocab_size", None)


def report_resume(run_dir, progress, changes):
    if not progress.epochs_done:
        return
    print(f"resuming {run_dir} after epoch {progress.epochs_done} (weights and optimizer state restored)")
    for name, (old, new) in changes.items():
        print(f"  --{name.replace('_', '-')} changed from {old} to {new}")


# --------------------------------------------------------------------------------------
# After training: evaluate, write every output, say where they are
# --------------------------------------------------------------------------------------
def finish(model, data, preprocessing, progress, run, train_examples, device):
    run_dir, distribution = run.run_dir, run.distribution
    restored = restore_best_weights(model, run, progress)
    x_test, y_test = training.even_rows(data.x_test, data.y_test, distribution.replicas)
    x_local, y_local = distribution.local_rows(x_test, y_test)
    test = model.evaluate(
        x_local, y_local, batch_size=EVAL_BATCH_SIZE // distribution.process_count,
        verbose=0, return_dict=True, callbacks=[training.CheckSignals(run)],
    )  # every process takes part; fmt: skip
    run.check_signals()
    metrics, failure = None, None
    if run_dir.writer:
        try:
            metrics = write_outputs(model, data, preprocessing, progress, run, test, (x_test, y_test), info_of(model, train_examples, device, restored))
        except Exception as error:  # the other processes wait to hear how it went
            failure = error
    outcome = cluster_outcome(run.distribution.cluster, failure)
    if outcome:
        raise failure or TrainingStopped("process 0 stopped before its outputs were written", outcome)
    Interrupts.finished()
    if run_dir.writer:
        print(final_line(metrics, run_dir))


def info_of(model, train_examples, device, restored):
    return {
        "train_examples": train_examples,
        "device": device,
        "restored_best": restored,
        "settings": settings_in_effect(model),  # the trained model's, not its copy's
    }


def cluster_outcome(cluster, failure):
    """0 if process 0 wrote every output, else the exit code every process ends with."""
    code = getattr(failure, "exit_code", EXIT_FAILED) if failure is not None else 0
    return cluster.agree(code)


def restore_best_weights(model, run, progress):
    """With --early-stopping, the model ends with the best epoch's weights (as Keras'
    EarlyStopping(restore_best_weights=True) does)."""
    if not run.args.early_stopping or not progress.best_epoch:
        return False
    weights = run.best_weights
    if weights is None:  # the best epoch was trained before this run resumed
        best = keras.saving.load_model(run.run_dir.path / "best.keras", safe_mode=True)
        weights = best.get_weights()
    model.set_weights(weights)
    return True


def write_outputs(model, data, preprocessing, progress, run, test, test_split, info):
    """Every output, by process 0 alone, from a copy of the model that needs no other
    process; metrics.json last, since its presence marks a finished run."""
    run_dir, names = run.run_dir, data.class_names
    x_test, y_test = test_split
    with devices.without_distribution():
        final = training.portable_copy(model)
        predicted = outputs.predicted_classes(final.predict(x_test, batch_size=EVAL_BATCH_SIZE, verbose=0))
        counts = outputs.confusion_matrix(y_test, predicted, len(names))
        Interrupts.check()
        run_dir.save_model(final, "model.keras")
        if not (run_dir.path / "best.keras").exists():  # no epoch improved in this session
            run_dir.save_model(final, "best.keras")
        info["reload"] = outputs.reload_difference(final, run_dir.path / "model.keras", x_test)
    run_dir.write_text("history.csv", outputs.history_csv(progress.rows))
    run_dir.write("curves.png", lambda path: outputs.plot_curves(progress.rows, path))
    run_dir.write("confusion.png", lambda path: outputs.plot_confusion(counts, names, path))
    if preprocessing.kind == "images":
        run_dir.write("samples.png", lambda p: outputs.plot_samples(x_test, y_test, predicted, names, p))
    metrics = summarise(final, data, progress, run, test, counts, info)
    Interrupts.check()
    run_dir.write_json(METRICS_FILE, metrics)
    run_dir.remove_state()
    return metrics


def summarise(model, data, progress, run, test, counts, info):
    args, distribution = run.args, run.distribution
    this_session = [r["seconds"] for r in progress.rows[progress.restored_epoch :]]
    return {
        "test_loss": test["loss"],
        "test_accuracy": test["accuracy"],
        "per_class_accuracy": outputs.per_class_accuracy(counts, data.class_names),
        "confusion_matrix": counts.tolist(),
        "epochs_run": progress.epochs_done,
        "epochs_this_session": len(this_session),
        "resumed_after_epoch": progress.restored_epoch or None,
        "stopped_early_at_epoch": progress.stopped_early,
        "best_epoch": progress.best_epoch,
        "restored_best_weights": info["restored_best"],
        "seconds_per_epoch": float(np.mean(this_session)) if this_session else None,
        "epoch_seconds": this_session,
        "train_samples_per_second": (
            info["train_examples"] / float(np.median(this_session)) if this_session else None
        ),
        "parameters": model.count_params(),
        "dataset": data.describe(),
        "train_examples": info["train_examples"],
        "validation_examples": len(data.x_val),
        "test_examples": int(counts.sum()),
        "backend": keras.backend.backend(),
        "device": info["device"],
        "replicas": distribution.replicas,
        "processes": distribution.process_count,
        "settings_in_effect": info["settings"],
        "reloaded_model_max_difference": info["reload"],
        "versions": outputs.versions(),
        "arguments": cli.to_json(args),
    }


def settings_in_effect(model):
    """What the libraries report, so that a flag's effect can be read back from a run."""
    found = {
        "steps_per_execution": int(model.steps_per_execution),
        "compute_dtype": model.layers[0].compute_dtype,
        "optimizer": type(model.optimizer).__name__,
        "clipnorm": model.optimizer.clipnorm,
        **devices.backend_settings(),
    }
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        found["cpu_threads_per_op"] = tf.config.threading.get_intra_op_parallelism_threads()
    return found


def final_line(metrics, run_dir):
    speed = (
        f"{metrics['seconds_per_epoch']:.1f} s/epoch"
        if metrics["seconds_per_epoch"]
        else "no epoch left to run"
    )
    stopped = ""
    if metrics["stopped_early_at_epoch"]:
        stopped = (
            f"  stopped early at epoch {metrics['stopped_early_at_epoch']}, "
            f"kept epoch {metrics['best_epoch']}"
        )
    elif metrics["restored_best_weights"]:
        stopped = f"  kept epoch {metrics['best_epoch']}"
    return (
        f"test accuracy {metrics['test_accuracy']:.4f}  loss {metrics['test_loss']:.4f}  "
        f"{speed}{stopped}  -> {run_dir}"
    )


# --------------------------------------------------------------------------------------
# The edge: every failure a user can cause becomes one line
# --------------------------------------------------------------------------------------
def hint(run_dir, script, stop=None, args=None, cluster=None):
    if run_dir is None:
        return "nothing was written"
    advice = run_dir.resume_hint(script)
    if cluster is not None and cluster.count > 1 and run_dir.latest_epoch():
        advice = advice.split(";")[0] + "; resume: start every process again with its command"
    if stop is not None and stop.exit_code == EXIT_FAILED:  # a non-finite loss
        lower = f"--learning-rate {args.learning_rate / 2:g} --clipnorm 1.0"
        if run_dir.latest_epoch():
            return f"{advice} {lower} (a lower learning rate, clipped gradients)"
        return f"{advice}; try {lower} (a lower learning rate, clipped gradients)"
    return advice


def describe_os_error(error):
    where = f" {error.filename}" if error.filename else ""
    return f"could not write{where}: {error.strerror or first_line(error)}"


def one_line_for(error, args, cluster):
    text = f"{type(error).__name__} {error}"
    if "use_cudnn=True" in text:  # Keras refuses use_cudnn=True for this model and backend
        return (
            "error: --use-cudnn true: Keras has no cuDNN kernel for this model on the "
            f"{keras.backend.backend()} backend (masked or unsupported layer); use --use-cudnn auto"
        )
    if any(s in text for s in ("RESOURCE_EXHAUSTED", "out of memory", "OutOfMemory", "OOM when")):
        return (
            f"error: out of memory at --batch-size {args.batch_size} ({first_line(error, 120)}); "
            "try a smaller --batch-size or --units"
        )
    if cluster.count > 1 and any(s in text for s in ("Gloo", "Connection", "DEADLINE", "UNAVAILABLE")):
        lost = cluster.lost()
        who = f"process {', '.join(map(str, lost))}" if lost else "another process"
        return (
            f"error: lost contact with {who} of this run ({first_line(error, 100)}); "
            "start every process again to resume"
        )
    return None
