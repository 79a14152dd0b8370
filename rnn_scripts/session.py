"""The stages of one run once Keras has loaded:

    speed-ups -> devices -> data -> preprocessing -> model -> compile -> fit -> evaluate
    -> outputs

pipeline.run() calls train_and_evaluate(); only the writing process (process 0) writes.
"""

import importlib.util
import inspect

import keras
import numpy as np

from . import data as datasets
from . import devices, export, feed, outputs, speedups, training
from .devices import backend_version
from .errors import EXIT_FAILED, Interrupts, TrainingStopped, UsageError, UserError, say
from .preprocess import SPEC_FILE, Preprocessing
from .rundir import METRICS_FILE


class Run:
    """One run's context for the epoch loop: folder, configuration, distribution."""

    def __init__(self, config, run_dir, distribution, fingerprint, regression):
        self.config, self.run_dir, self.distribution = config, run_dir, distribution
        self.fingerprint, self.regression = fingerprint, regression
        self.architecture, self.best_weights = None, None
        if config.tensorboard and importlib.util.find_spec("tensorboard") is None:
            raise UserError(
                "--tensorboard needs the tensorboard package: pip install tensorboard"
            )

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
            len(meta["rows"]),
            model.get_weights(),
            training.optimizer_values(model),
            meta,
        )
        run_dir.write_text("history.csv", outputs.history_csv(meta["rows"]))
        run_dir.write(
            "curves.png",
            lambda path: outputs.plot_curves(meta["rows"], path, meta["best_epoch"]),
        )

    def extra_callbacks(self):
        if not (self.config.tensorboard and self.run_dir.writer):
            return []
        return [
            training.FlushedTensorBoard(self.run_dir, write_graph=False, profile_batch=0)
        ]


def train_and_evaluate(*arguments):
    """The run, with Keras' global state (dtype policy, distribution, the functions the
    speed-ups replace) put back afterwards: a notebook's own models are untouched."""
    policy, distribution = keras.config.dtype_policy(), keras.distribution.distribution()
    try:
        stages(*arguments)
    finally:
        speedups.uninstall()
        keras.config.set_dtype_policy(policy)
        keras.distribution.set_distribution(distribution)


def stages(build_model, contract, hooks, config, run_dir, changes, cluster, script, argv):
    if config.export:
        export.check_exporter(config.export)
    # first: TensorFlow's threads and devices are fixed once it runs an op
    device = devices.setup_devices(config)
    active = speedups.install(config)
    keras.utils.set_random_seed(
        config.seed
    )  # again: the speed-ups' self-checks drew random numbers
    distribution = devices.choose_distribution(config, cluster)
    report_backend(device, distribution, config)
    data, preprocessing = prepare_data(config, contract.reads, run_dir)
    fingerprint = data.fingerprint()
    if cluster.differs(fingerprint):
        raise UserError(
            "the processes of this run read different data (their fingerprints differ); give every process the same --data"
        )
    record_arguments(run_dir, cluster, config, changes, script, argv)
    if preprocessing.is_regression and config.class_weight != "none":
        raise UsageError(
            "--class-weight weighs classes; this run predicts values (a regression)"
        )
    run = Run(config, run_dir, distribution, fingerprint, preprocessing.is_regression)
    own = resolved(hooks)
    with distribution.scope():
        model, progress = build_and_restore(
            build_model, contract, own, run, data, preprocessing, device
        )
    if -cluster.agree(-progress.epochs_done) != cluster.agree(progress.epochs_done):
        raise UserError(
            f"the processes found different saved epochs in {run_dir}: it must be shared storage"
        )
    if (
        progress.learning_rate_argument not in (None, config.learning_rate)
        and config.lr_schedule != "cosine"
    ):
        model.optimizer.learning_rate = (
            config.learning_rate
        )  # --learning-rate given on resume
    report_resume(run_dir, progress, changes)
    weights = (
        None
        if run.regression
        else training.class_weights(
            config, data.train.y, data.class_names, own.class_weight
        )
    )
    Interrupts.mode = "defer"
    train_examples = training.train(
        model,
        data,
        preprocessing,
        run,
        progress,
        distribution,
        own.callbacks or (),
        weights,
    )
    finish(
        model,
        data,
        preprocessing,
        progress,
        run,
        train_examples,
        {"device": device, "speedups": active},
    )


def record_arguments(run_dir, cluster, config, changes, script, argv):
    """args.json: written when a run starts, and again with what changed when it resumes."""
    if run_dir.writer and not changes and not run_dir.has_unfinished_run():
        run_dir.save_arguments(script, config.to_json(), argv, [])
    elif run_dir.writer and changes:
        saved = run_dir.saved_arguments()
        earlier = saved.get("changes", []) + [
            {"after_epoch": run_dir.latest_epoch(), "changed": changes}
        ]
        run_dir.save_arguments(
            script, config.to_json(), saved.get("argv", argv), earlier
        )
    if cluster.count > 1:
        cluster.agree(0)  # process 0 has written args.json
        if not (run_dir.path / "args.json").is_file():
            raise UserError(
                f"{run_dir} holds no args.json from process 0: --output-dir must be on storage that every process sees"
            )


def build_and_restore(build_model, contract, own, run, data, preprocessing, device):
    """The model, built and compiled, with the state of the newest saved epoch (if any)."""
    config = run.config
    options = contract.model_options(config, preprocessing.model_options())
    model, output = training.build(build_model, options, preprocessing)
    training.use_cudnn(model, config.use_cudnn)
    if "output" not in preprocessing.spec:
        preprocessing.spec["output"] = output
        preprocessing.save(run.run_dir)
    run.architecture = training.architecture_of(model)
    training.compile_model(
        model, config, output, own, -(-len(data.train) // config.batch_size)
    )
    note = devices.faster_backend_note(
        model.name, model.count_params(), keras.backend.backend(), device
    )
    if note:
        say(note)
    model.summary()  # before the optimizer's state exists: the model's parameters only
    return model, training.restore(model, run)


def zero_argument_function(value):
    """Whether a run() argument is a function to call once Keras has loaded."""
    if not callable(value) or isinstance(
        value, (type, keras.losses.Loss, keras.metrics.Metric)
    ):
        return False
    try:
        parameters = inspect.signature(value).parameters.values()
    except (TypeError, ValueError):
        return False
    return all(
        p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        for p in parameters
    )


def resolved(hooks):
    """The run() arguments as Keras objects: strings looked up, functions called."""
    values = {}
    for name in ("loss", "metrics", "optimizer", "callbacks", "class_weight"):
        value = getattr(hooks, name)
        values[name] = (
            value() if zero_argument_function(value) and name != "optimizer" else value
        )
    if isinstance(values["optimizer"], str):
        kind = type(keras.optimizers.get(values["optimizer"]))
        values["optimizer"] = kind
    if isinstance(values["metrics"], (str, keras.metrics.Metric)):
        values["metrics"] = [values["metrics"]]
    return type(hooks)(**values)


def report_backend(device, distribution, config):
    backend = keras.backend.backend()
    replicas = ""
    if distribution.replicas > 1:
        replicas = (
            f", {distribution.replicas} replicas, global batch {config.batch_size}"
        )
    say(
        f"backend {backend} {backend_version(backend)} (Keras {keras.__version__}) on {device}{replicas}"
    )


def prepare_data(config, reads, run_dir):
    """Load, limit and split the data; fit the preprocessing on the training rows (or take
    the one a resumed run saved) and apply it to every split held in memory."""
    data = datasets.load(config, reads)
    if (run_dir.path / SPEC_FILE).is_file() and run_dir.has_unfinished_run():
        preprocessing = Preprocessing.load(run_dir.path)
    else:
        preprocessing = Preprocessing.fit(data, config)
    preprocessing.apply_to(data)
    kind = " (synthetic)" if data.synthetic else ""
    shape = (
        tuple(data.train.x.shape[1:])
        if hasattr(data.train.x, "shape")
        else "(texts read from disk)"
    )
    what = (
        f"{len(data.class_names)} target value(s)"
        if data.targets.is_regression
        else f"{len(data.class_names)} classes"
    )
    say(
        f"data {data.name}{kind}: {len(data.train)} train, {len(data.validation)} validation, "
        f"{len(data.test)} test examples of shape {shape} with {what} from {data.source}"
    )
    return data, preprocessing


def report_resume(run_dir, progress, changes):
    if not progress.epochs_done:
        return
    say(
        f"resuming {run_dir} after epoch {progress.epochs_done} (weights and optimizer state restored)"
    )
    for name, (old, new) in changes.items():
        say(f"  --{name.replace('_', '-')} changed from {old} to {new}")


# --------------------------------------------------------------------------------------
# After training: evaluate, write every output, say where they are
# --------------------------------------------------------------------------------------
def finish(model, data, preprocessing, progress, run, train_examples, info):
    run_dir, distribution = run.run_dir, run.distribution
    info["restored_best"] = restore_best_weights(model, run, progress)
    test = feed.even_rows(data.test, distribution.replicas)
    scores = model.evaluate(
        **feed.evaluation(
            distribution.local_split(test),
            preprocessing,
            feed.EVAL_BATCH_SIZE // distribution.process_count,
        ),
        verbose=0,
        return_dict=True,
        callbacks=[training.CheckSignals(run)],
    )  # every process takes part; fmt: skip
    run.check_signals()
    metrics, failure = None, None
    if run_dir.writer:
        info.update(
            train_examples=train_examples,
            settings=settings_in_effect(model, info["speedups"]),
        )
        try:
            metrics = write_outputs(
                model, data, preprocessing, progress, run, scores, test, info
            )
        except Exception as error:  # the other processes wait to hear how it went
            failure = error
    code = getattr(failure, "exit_code", EXIT_FAILED) if failure is not None else 0
    if distribution.cluster.agree(code):
        raise failure or TrainingStopped(
            "process 0 stopped before its outputs were written", code
        )
    Interrupts.finished()
    if run_dir.writer:
        say(final_line(metrics, run_dir))
        export_finished_run(run.config, run_dir)


def export_finished_run(config, run_dir):
    """--export: the finished run for serving; a failure leaves the run finished."""
    if not config.export:
        return
    try:
        for path in export.export_run(run_dir.path, config.export):
            say(f"exported {path}")
    except UserError as error:
        formats = " ".join(f"--format {name}" for name in config.export)
        raise UserError(
            f"{error}; the run itself is finished (retry: python export.py {run_dir} {formats})"
        ) from None


def restore_best_weights(model, run, progress):
    """With --early-stopping, the model ends with the best epoch's weights (as Keras'
    EarlyStopping(restore_best_weights=True) does)."""
    if not run.config.early_stopping or not progress.best_epoch:
        return False
    weights = run.best_weights
    if weights is None:  # the best epoch was trained before this run resumed
        best = keras.saving.load_model(run.run_dir.path / "best.keras", safe_mode=True)
        weights = best.get_weights()
    model.set_weights(weights)
    return True


def write_outputs(model, data, preprocessing, progress, run, scores, test, info):
    """Every output, by process 0 alone, from a copy of the model that needs no other
    process; metrics.json last, since its presence marks a finished run."""
    run_dir = run.run_dir
    with devices.without_distribution():
        final = training.portable_copy(model)
        predicted = final.predict(feed.predict_inputs(test, preprocessing), verbose=0)
        Interrupts.check()
        run_dir.save_model(final, "model.keras")
        if not (
            run_dir.path / "best.keras"
        ).exists():  # no epoch improved in this session
            run_dir.save_model(final, "best.keras")
        best_scores = best_model_scores(run_dir, test, preprocessing)
        sample = test.take(np.arange(min(len(test), feed.EVAL_BATCH_SIZE)))
        info["reload"] = outputs.reload_difference(
            final,
            run_dir.path / "model.keras",
            feed.predict_inputs(sample, preprocessing),
        )
    run_dir.write_text("history.csv", outputs.history_csv(progress.rows))
    run_dir.write(
        "curves.png",
        lambda path: outputs.plot_curves(progress.rows, path, progress.best_epoch),
    )
    metrics = summary(final, data, progress, run, scores, info)
    metrics["best_model"] = {"epoch": progress.best_epoch, **best_scores}
    metrics.update(test_results(preprocessing, data, test, predicted, run_dir))
    Interrupts.check()
    run_dir.write_json(METRICS_FILE, metrics)
    run_dir.remove_state()
    return metrics


def best_model_scores(run_dir, test, preprocessing):
    """best.keras evaluated on the test split: {"test_loss", "test_accuracy" / "test_mae", ...}."""
    best = keras.saving.load_model(run_dir.path / "best.keras", safe_mode=True)
    found = best.evaluate(
        **feed.evaluation(test, preprocessing), verbose=0, return_dict=True
    )
    return {f"test_{name}": float(value) for name, value in found.items()}


def test_results(preprocessing, data, test, predicted, run_dir):
    """The test split's figures and pictures: a confusion matrix (and samples of images),
    or a regression's errors and its predicted-against-true plot."""
    names = data.class_names
    if preprocessing.is_regression:
        found = outputs.regression_metrics(test.y, predicted, names)
        run_dir.write(
            "predictions.png",
            lambda p: outputs.plot_predictions(test.y, np.asarray(predicted), names, p),
        )
        return {
            "test_mae": found["mae"],
            "test_rmse": found["rmse"],
            "per_target": found["per_target"],
        }
    classes = outputs.predicted_classes(predicted)
    counts = outputs.confusion_matrix(test.y, classes, len(names))
    run_dir.write(
        "confusion.png", lambda path: outputs.plot_confusion(counts, names, path)
    )
    if preprocessing.kind == "images":
        pictures = test.x
        run_dir.write(
            "samples.png",
            lambda p: outputs.plot_samples(pictures, test.y, classes, names, p),
        )
    return {
        "per_class_accuracy": outputs.per_class_accuracy(counts, names),
        "confusion_matrix": counts.tolist(),
    }


def summary(model, data, progress, run, scores, info):
    config, distribution = run.config, run.distribution
    this_session = [r["seconds"] for r in progress.rows[progress.restored_epoch :]]
    return {
        **{f"test_{name}": float(value) for name, value in scores.items()},
        "epochs_run": progress.epochs_done,
        "epochs_this_session": len(this_session),
        "resumed_after_epoch": progress.restored_epoch or None,
        "stopped_early_at_epoch": progress.stopped_early,
        "best_epoch": progress.best_epoch,
        "restored_best_weights": info["restored_best"],
        "seconds_per_epoch": float(np.mean(this_session)) if this_session else None,
        "epoch_seconds": this_session,
        "train_samples_per_second": (
            info["train_examples"] / float(np.median(this_session))
            if this_session
            else None
        ),
        "parameters": model.count_params(),
        "dataset": data.describe(),
        "train_examples": info["train_examples"],
        "validation_examples": len(data.validation),
        "test_examples": len(data.test) - len(data.test) % distribution.replicas,
        "backend": keras.backend.backend(),
        "device": info["device"],
        "replicas": distribution.replicas,
        "processes": distribution.process_count,
        "settings_in_effect": info["settings"],
        "reloaded_model_max_difference": info["reload"],
        "versions": outputs.versions(),
        "arguments": run.config.to_json(),
    }


def settings_in_effect(model, active):
    """What the libraries report, so that a flag's effect can be read back from a run."""
    return {
        "steps_per_execution": int(model.steps_per_execution),
        "compute_dtype": next(
            layer.compute_dtype
            for layer in model.layers
            if not isinstance(layer, keras.layers.InputLayer)
        ),
        "optimizer": type(model.optimizer).__name__,
        "clipnorm": model.optimizer.clipnorm,
        "fused_kernels": active,
        **devices.backend_settings(),
    }


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
    if "test_accuracy" in metrics:
        score = f"test accuracy {metrics['test_accuracy']:.4f}"
    else:
        score = f"test mae {metrics['test_mae']:.4g}  rmse {metrics['test_rmse']:.4g}"
    where = "(a smoke run: its temporary folder is removed)" if run_dir.temporary else run_dir
    return f"{score}  loss {metrics['test_loss']:.4f}  {speed}{stopped}  -> {where}"
