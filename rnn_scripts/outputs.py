"""What a run leaves to look at: history, curves, the confusion matrix (or predicted
against true values for a regression), sample predictions, and the figures of
metrics.json."""

import platform

import keras
import numpy as np

from . import training

SAMPLES_SHOWN, MISTAKES_SHOWN = 24, 12  # samples.png: up to 12 mistakes, then right ones


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no window
    import matplotlib.pyplot as plt

    return plt


def history_fields(rows):
    """epoch, then every logged value in the order the rows first hold it."""
    fields = ["epoch"]
    for row in rows:
        fields += [
            k for k in row if k not in fields and k not in ("learning_rate", "seconds")
        ]
    return fields + ["learning_rate", "seconds"]


def history_csv(rows):
    fields = history_fields(rows)
    lines = [",".join(fields)]
    for row in rows:
        cells = (
            ""
            if row.get(k) is None
            else str(row[k])
            if k == "epoch"
            else f"{row[k]:.6g}"
            for k in fields
        )
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def curve_panels(rows):
    """loss, the main metric (accuracy or mae), and the learning rate when it changed."""
    panels = ["loss"] + [m for m in ("accuracy", "mae") if rows and m in rows[0]][:1]
    if len({r["learning_rate"] for r in rows}) > 1:
        panels.append("learning_rate")
    return panels


def plot_curves(rows, path, best_epoch=None):
    save(curves_figure(rows, best_epoch), path)


def write_history(run_dir, rows, best_epoch):
    """history.csv and curves.png, each replaced whole."""
    run_dir.write_text("history.csv", history_csv(rows))
    run_dir.write("curves.png", lambda path: plot_curves(rows, path, best_epoch))


def curves_figure(rows, best_epoch=None):
    """Loss and the main metric by epoch, training against validation; the learning rate
    too when it changed; a dashed line at the epoch best.keras holds."""
    plt = pyplot()
    from matplotlib import ticker

    panels = curve_panels(rows)
    figure, axes = plt.subplots(
        1, len(panels), figsize=(5 * len(panels), 4), squeeze=False
    )
    epochs = [r["epoch"] for r in rows]
    for axis, metric in zip(axes[0], panels):
        axis.plot(epochs, [r.get(metric) for r in rows], "o-", label="training")
        if any(r.get("val_" + metric) is not None for r in rows):
            axis.plot(
                epochs, [r.get("val_" + metric) for r in rows], "o-", label="validation"
            )
        if best_epoch:
            axis.axvline(
                best_epoch,
                color="grey",
                linestyle="--",
                label=f"best.keras (epoch {best_epoch})",
            )
        axis.set(
            xlabel="epoch",
            ylabel=metric.replace("_", " "),
            title=metric.replace("_", " "),
        )
        axis.grid(alpha=0.3)
        axis.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))  # whole epochs
        if metric == "learning_rate":
            axis.set_yscale("log")
        axis.legend(fontsize=8)
    return figure


def save(figure, path):
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot().close(figure)


def predicted_classes(outputs):
    """Class ids from a classifier's outputs: one logit or probability per class, or one
    unit for two classes (> 0 as a logit, > 0.5 as a probability)."""
    outputs = np.asarray(outputs)
    if outputs.shape[1] > 1:
        return outputs.argmax(axis=1)
    return (outputs[:, 0] > 0).astype(int)


def confusion_matrix(y_true, y_predicted, classes):
    counts = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(counts, (y_true, y_predicted), 1)
    return counts


def per_class_accuracy(counts, names):
    totals = counts.sum(axis=1)
    return {
        name: (float(counts[i, i] / totals[i]) if totals[i] else None)
        for i, name in enumerate(names)
    }


def regression_metrics(y_true, y_predicted, names):
    """MAE, RMSE and R² (1 - squared error / the targets' variance), over every target
    value and per target."""
    true = np.asarray(y_true, np.float64).reshape(len(y_true), -1)
    errors = np.asarray(y_predicted, np.float64).reshape(true.shape) - true

    def figures(error, target):
        spread = ((target - target.mean(axis=0)) ** 2).sum()
        r2 = 1 - (error**2).sum() / spread if spread > 0 else None
        return {
            "mae": float(np.abs(error).mean()),
            "rmse": float(np.sqrt((error**2).mean())),
            "r2": None if r2 is None else float(r2),
        }

    found = figures(errors, true)
    found["per_target"] = {
        n: figures(errors[:, i], true[:, i]) for i, n in enumerate(names)
    }
    return found


def plot_confusion(counts, names, path):
    save(confusion_figure(counts, names), path)


def confusion_figure(counts, names):
    plt = pyplot()
    size = max(4, 0.5 * len(names) + 2)
    figure, axis = plt.subplots(figsize=(size + 1, size))
    image = axis.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=axis, label="test examples")
    ticks = range(len(names))
    axis.set_xticks(
        ticks, names, rotation=45 if max(map(len, names)) > 2 else 0, ha="right"
    )
    axis.set_yticks(ticks, names)
    axis.set(
        xlabel="predicted class",
        ylabel="true class",
        title="test set: true vs predicted",
    )
    if len(names) <= 20:
        middle = counts.max() / 2
        for (i, j), count in np.ndenumerate(counts):
            color = "white" if count > middle else "black"
            axis.text(
                j, i, str(count), ha="center", va="center", color=color, fontsize=8
            )
    return figure


def plot_predictions(y_true, y_predicted, names, path):
    """A regression's test set: each target's predicted against true values."""
    plt = pyplot()
    shown = names[:4]
    figure, axes = plt.subplots(
        1, len(shown), figsize=(4.5 * len(shown), 4.2), squeeze=False
    )
    for i, (axis, name) in enumerate(zip(axes[0], shown)):
        true, predicted = y_true[:, i], y_predicted[:, i]
        axis.scatter(true, predicted, s=8, alpha=0.6)
        low, high = (
            float(min(true.min(), predicted.min())),
            float(max(true.max(), predicted.max())),
        )
        axis.plot(
            [low, high],
            [low, high],
            color="grey",
            linestyle="--",
            label="predicted = true",
        )
        axis.set(
            xlabel=f"true {name}", ylabel=f"predicted {name}", title=f"test set: {name}"
        )
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    save(figure, path)


def samples_shown(y_true, y_predicted, count=SAMPLES_SHOWN, mistakes=MISTAKES_SHOWN):
    """Which test examples samples.png shows: mistakes first (at most `mistakes`), then
    right predictions, so that both kinds are shown where both exist."""
    wrong = np.flatnonzero(y_true != y_predicted)
    right = np.flatnonzero(y_true == y_predicted)
    kept_wrong = wrong[: max(mistakes, count - len(right))]
    return np.concatenate([kept_wrong, right[: count - len(kept_wrong)]])


def plot_samples(pictures, y_true, y_predicted, names, path):
    save(samples_figure(pictures, y_true, y_predicted, names), path)


def samples_figure(pictures, y_true, y_predicted, names, columns=8):
    """Test images with predicted and true class (the examples samples_shown picks), as
    one picture of tiles: one axes draws in a fraction of the time of one axes per
    image."""
    plt = pyplot()
    shown = samples_shown(y_true, y_predicted)
    rows = max(1, -(-len(shown) // columns))
    height, width = np.asarray(pictures[0]).shape[:2]
    tile_h, tile_w = height + height // 2, width + width // 4  # room for the titles
    sheet = np.full((rows * tile_h, columns * tile_w), np.nan)
    figure, axis = plt.subplots(figsize=(2 * columns, 2.3 * rows))
    for place, i in enumerate(shown):
        top, left = (place // columns) * tile_h + height // 2, (place % columns) * tile_w
        sheet[top : top + height, left : left + width] = pictures[i]
        mistake = y_true[i] != y_predicted[i]
        title = names[y_predicted[i]] + (
            f" (true {names[y_true[i]]})" if mistake else ""
        )
        color = "red" if mistake else "black"
        axis.text(left + width / 2, top - 1, title, ha="center", color=color, fontsize=9)
    axis.imshow(sheet, cmap="gray")
    axis.axis("off")
    return figure


def versions():
    backend = keras.backend.backend()
    found = {
        "python": platform.python_version(),
        "keras": keras.__version__,
        "numpy": np.__version__,
        backend: __import__(backend).__version__,
    }
    if backend != "tensorflow":
        try:
            found["tensorflow"] = __import__("tensorflow").__version__
        except ImportError:
            found["tensorflow"] = None
    return found


# --------------------------------------------------------------------------------------
# metrics.json and the last line
# --------------------------------------------------------------------------------------
def test_figures(run_dir, preprocessing, data, test, predicted):
    """The test split's figures and pictures: a confusion matrix (and samples of images),
    or a regression's errors and its predicted-against-true plot."""
    names = data.class_names
    if preprocessing.is_regression:
        found = regression_metrics(test.y, predicted, names)
        picture = lambda p: plot_predictions(test.y, np.asarray(predicted), names, p)  # noqa: E731
        run_dir.write("predictions.png", picture)
        return {f"test_{k}": v for k, v in found.items() if k != "per_target"} | {
            "per_target": found["per_target"]
        }
    classes = predicted_classes(predicted)
    counts = confusion_matrix(test.y, classes, len(names))
    run_dir.write("confusion.png", lambda path: plot_confusion(counts, names, path))
    if preprocessing.kind.shows_pictures:
        run_dir.write(
            "samples.png", lambda p: plot_samples(test.x, test.y, classes, names, p)
        )
    return {
        "per_class_accuracy": per_class_accuracy(counts, names),
        "confusion_matrix": counts.tolist(),
    }


def summary(model, data, progress, run, scores, facts):
    distribution = run.distribution
    this_session = [r["seconds"] for r in progress.rows[progress.restored_epoch :]]
    speed = (
        facts["train_examples"] / float(np.median(this_session))
        if this_session
        else None
    )
    return {
        **{f"test_{name}": float(value) for name, value in scores.items()},
        "epochs_run": progress.epochs_done,
        "epochs_this_session": len(this_session),
        "resumed_after_epoch": progress.restored_epoch or None,
        "stopped_early_at_epoch": progress.stopped_early,
        "best_epoch": progress.best_epoch,
        "monitor": training.monitor_of(run.config, run.regression),
        "restored_best_weights": facts["restored_best"],
        "seconds_per_epoch": float(np.mean(this_session)) if this_session else None,
        "epoch_seconds": this_session,
        "train_samples_per_second": speed,
        "parameters": model.count_params(),
        "dataset": data.describe(),
        "train_examples": facts["train_examples"],
        "validation_examples": len(data.validation),
        "test_examples": len(data.test) - len(data.test) % distribution.replicas,
        "backend": keras.backend.backend(),
        "device": facts["device"],
        "replicas": distribution.replicas,
        "processes": distribution.process_count,
        "settings_in_effect": facts["settings"],
        "reloaded_model_max_difference": facts["reload"],
        "versions": versions(),
        "arguments": run.config.to_json(),
    }


def final_line(metrics, run_dir):
    seconds = metrics["seconds_per_epoch"]
    speed = f"{seconds:.1f} s/epoch" if seconds else "no epoch left to run"
    stopped = ""
    if metrics["stopped_early_at_epoch"]:
        stopped = f"  stopped early at epoch {metrics['stopped_early_at_epoch']}, "
        stopped += f"kept epoch {metrics['best_epoch']}"
    elif metrics["restored_best_weights"]:
        stopped = f"  kept epoch {metrics['best_epoch']}"
    if "test_accuracy" in metrics:
        score = f"test accuracy {metrics['test_accuracy']:.4f}"
    else:
        r2 = "" if metrics["test_r2"] is None else f"  r2 {metrics['test_r2']:.4f}"
        score = (
            f"test mae {metrics['test_mae']:.4g}  rmse {metrics['test_rmse']:.4g}{r2}"
        )
    where = (
        "(a smoke run: its temporary folder is removed)"
        if run_dir.temporary
        else run_dir
    )
    return f"{score}  loss {metrics['test_loss']:.4f}  {speed}{stopped}  -> {where}"
