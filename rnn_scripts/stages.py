"""The stages of a run once Keras has loaded (pipeline.start calls train_and_evaluate):

    speed-ups -> devices -> data -> preprocessing -> model -> compile -> restore -> fit
    -> evaluate -> outputs

Each takes the pipeline's Run; only the writing process (process 0) writes.
"""

import importlib.util

import keras
import numpy as np

from . import data as datasets
from . import devices, export, feed, outputs, resume, speedups, training
from .errors import EXIT_FAILED, Interrupts, TrainingStopped, UsageError, UserError, say
from .preprocess import SPEC_FILE, Preprocessing
from .rundir import METRICS_FILE


def train_and_evaluate(run):
    """The run, with Keras' global state (dtype policy, distribution, the functions the
    speed-ups replace) put back afterwards: a notebook's own models are untouched."""
    policy, distribution = keras.config.dtype_policy(), keras.distribution.distribution()
    try:
        stages(run)
    finally:
        speedups.uninstall()
        keras.config.set_dtype_policy(policy)
        keras.distribution.set_distribution(distribution)


def stages(run):
    config, cluster = run.config, run.cluster
    if config.export:
        export.check_exporter(config.export)
    if config.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise UserError(
            "--tensorboard needs the tensorboard package: pip install tensorboard"
        )
    # first: TensorFlow's threads and devices are fixed once it runs an op
    device = devices.setup_devices(config)
    active = speedups.install(config)
    # again: the self-checks drew random numbers
    keras.utils.set_random_seed(config.seed)
    run.hooks = training.resolve_hooks(run.hooks)
    run.distribution = devices.choose_distribution(config, cluster)
    report_backend(device, run.distribution, config)
    data, preprocessing = prepare_data(run)
    run.fingerprint = data.fingerprint()
    if cluster.differs(run.fingerprint):
        raise UserError(
            "the processes of this run read different data (their fingerprints differ); "
            "give every process the same --data"
        )
    resume.record_arguments(run)
    run.regression = preprocessing.is_regression
    if run.regression and config.class_weight != "none":
        raise UsageError(
            "--class-weight weighs classes; this run predicts values (a regression)"
        )
    with run.distribution.scope():
        model = build(run, data, preprocessing, device)
        progress = resume.restore(model, run)
    if -cluster.agree(-progress.epochs_done) != cluster.agree(progress.epochs_done):
        raise UserError(
            f"the processes found different saved epochs in {run.run_dir}: it must be "
            "shared storage"
        )
    Interrupts.mode = "defer"
    train_examples = training.train(model, data, preprocessing, run, progress)
    finish(run, model, data, preprocessing, progress, train_examples, device, active)


def report_backend(device, distribution, config):
    backend = keras.backend.backend()
    replicas = ""
    if distribution.replicas > 1:
        replicas = (
            f", {distribution.replicas} replicas, global batch {config.batch_size}"
        )
    version = devices.backend_version(backend)
    say(f"backend {backend} {version} (Keras {keras.__version__}) on {device}{replicas}")


def prepare_data(run):
    """Load, limit and split the data; fit the preprocessing on the training rows (or
    take the one a resumed run saved) and apply it to every split held in memory."""
    config, run_dir = run.config, run.run_dir
    data = datasets.load(config, run.reads)
    if (run_dir.path / SPEC_FILE).is_file() and run_dir.has_unfinished_run():
        preprocessing = Preprocessing.load(run_dir.path)
    else:
        preprocessing = Preprocessing.fit(data, config)
    preprocessing.apply_to(data)
    synthetic = " (synthetic)" if data.synthetic else ""
    shape = (
        tuple(data.train.x.shape[1:])
        if hasattr(data.train.x, "shape")
        else "(texts read from disk)"
    )
    count = len(data.class_names)
    targets = data.targets
    what = f"{count} target value(s)" if targets.is_regression else f"{count} classes"
    say(
        f"data {data.name}{synthetic}: {len(data.train)} train, {len(data.validation)} "
        f"validation, {len(data.test)} test examples of shape {shape} with {what} from "
        f"{data.source}"
    )
    if targets.why:  # your own data: say how the task was chosen
        say(f"task: {targets.task} ({targets.why})")
    return data, preprocessing


def build(run, data, preprocessing, device):
    """The model, built, checked and compiled; preprocessing.json once its output is
    known."""
    options = run.contract.model_options(run.config, preprocessing.model_options())
    model, output = training.build(run.build_model, options, preprocessing)
    training.use_cudnn(model, run.config.use_cudnn)
    if "output" not in preprocessing.spec:
        preprocessing.spec["output"] = output
        preprocessing.save(run.run_dir)
    run.architecture = training.architecture_of(model)
    steps = -(-len(data.train) // run.config.batch_size)
    training.compile_model(model, run.config, output, run.hooks, steps)
    backend = keras.backend.backend()
    note = devices.faster_backend_note(model.name, model.count_params(), backend, device)
    if note:
        say(note)
    model.summary()  # before the optimizer's state exists: the model's parameters only
    return model


# --------------------------------------------------------------------------------------
# After training: evaluate, write every output, say where they are
# --------------------------------------------------------------------------------------
def finish(run, model, data, preprocessing, progress, train_examples, device, active):
    run_dir, distribution = run.run_dir, run.distribution
    restored = restore_best_weights(model, run, progress)
    test = feed.even_rows(data.test, distribution.replicas)
    parts = distribution.process_count
    evaluation = feed.evaluation(
        distribution.local_split(test), preprocessing, feed.EVAL_BATCH_SIZE // parts
    )
    callbacks = [training.CheckSignals(run)]  # every process takes part
    scores = model.evaluate(
        **evaluation, verbose=0, return_dict=True, callbacks=callbacks
    )
    run.check_signals()
    metrics, failure = None, None
    if run_dir.writer:
        facts = {
            "device": device,
            "restored_best": restored,
            "train_examples": train_examples,
            "settings": settings_in_effect(model, active),
        }
        try:
            metrics = write_outputs(
                run, model, data, preprocessing, progress, scores, test, facts
            )
        except Exception as error:  # the other processes wait to hear how it went
            failure = error
    code = getattr(failure, "exit_code", EXIT_FAILED) if failure is not None else 0
    if run.cluster.agree(code):
        raise failure or TrainingStopped(
            "process 0 stopped before its outputs were written", code
        )
    Interrupts.finished()
    if run_dir.writer:
        say(outputs.final_line(metrics, run_dir))
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
        retry = f"python export.py {run_dir} {formats}"
        raise UserError(
            f"{error}; the run itself is finished (retry: {retry})"
        ) from None


def restore_best_weights(model, run, progress):
    """With --early-stopping, the model ends with the best epoch's weights (as Keras'
    EarlyStopping(restore_best_weights=True) does)."""
    if not run.config.early_stopping or not progress.best_epoch:
        return False
    model.set_weights(best_weights(run))
    return True


def best_weights(run):
    if run.best_weights is None:  # the best epoch was trained before this run resumed
        best = keras.saving.load_model(run.run_dir.path / "best.keras", safe_mode=True)
        run.best_weights = best.get_weights()
    return run.best_weights


def write_outputs(run, model, data, preprocessing, progress, scores, test, facts):
    """Every output, by process 0 alone, from a copy of the model that needs no other
    process; metrics.json last, since its presence marks a finished run."""
    run_dir = run.run_dir
    with devices.without_distribution():
        final = training.portable_copy(model)
        predicted = final.predict(feed.predict_inputs(test, preprocessing), verbose=0)
        Interrupts.check()
        run_dir.save_model(final, "model.keras")
        if not (run_dir.path / "best.keras").exists():  # no epoch improved this session
            run_dir.save_model(final, "best.keras")
        best = best_model_scores(
            run, final, progress, scores, test, preprocessing, facts
        )
        sample = test.take(np.arange(min(len(test), feed.EVAL_BATCH_SIZE)))
        inputs = feed.predict_inputs(sample, preprocessing)
        reloaded = keras.saving.load_model(run_dir.path / "model.keras", safe_mode=True)
        found = reloaded.predict(inputs, verbose=0, batch_size=feed.EVAL_BATCH_SIZE)
        facts["reload"] = float(
            np.abs(np.asarray(found) - predicted[: len(sample)]).max()
        )
    if (
        progress.epochs_done == progress.restored_epoch
    ):  # no epoch wrote them this session
        outputs.write_history(run_dir, progress.rows, progress.best_epoch)
    metrics = outputs.summary(final, data, progress, run, scores, facts)
    metrics["best_model"] = {"epoch": progress.best_epoch, **best}
    metrics.update(outputs.test_figures(run_dir, preprocessing, data, test, predicted))
    Interrupts.check()
    run_dir.write_json(METRICS_FILE, metrics)
    run_dir.keep_last_state()
    return metrics


def best_model_scores(run, final, progress, scores, test, preprocessing, facts):
    """best.keras's test scores: the final model's where the last epoch was the best (or
    early stopping restored it), else the best weights evaluated in the final copy."""
    if facts["restored_best"] or progress.best_epoch == progress.epochs_done:
        return {f"test_{name}": float(value) for name, value in scores.items()}
    weights = final.get_weights()
    final.set_weights(best_weights(run))
    found = final.evaluate(
        **feed.evaluation(test, preprocessing), verbose=0, return_dict=True
    )
    final.set_weights(weights)
    return {f"test_{name}": float(value) for name, value in found.items()}


def settings_in_effect(model, active):
    """What the libraries report, so that a flag's effect can be read back from a run."""
    layers = [
        layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)
    ]
    return {
        "steps_per_execution": int(model.steps_per_execution),
        "compute_dtype": layers[0].compute_dtype,
        "optimizer": type(model.optimizer).__name__,
        "clipnorm": model.optimizer.clipnorm,
        "fused_kernels": active,
        **devices.backend_settings(),
    }
