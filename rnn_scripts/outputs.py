"""What a run leaves to look at: curves, confusion matrix, sample predictions, metrics.json."""

import platform

import keras
import numpy as np

from .devices import EVAL_BATCH_SIZE, backend_version
from .training import HISTORY_FIELDS


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no window
    import matplotlib.pyplot as plt

    return plt


def history_csv(rows):
    lines = [",".join(HISTORY_FIELDS)]
    for row in rows:
        cells = (
            "" if row[k] is None else str(row[k]) if k == "epoch" else f"{row[k]:.6g}"
            for k in HISTORY_FIELDS
        )
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def plot_curves(rows, path):
    """Loss and accuracy by epoch, training against validation; the learning rate too
    when it changed during the run."""
    plt = pyplot()
    rates = [r["learning_rate"] for r in rows]
    panels = ["loss", "accuracy"] + (["learning_rate"] if len(set(rates)) > 1 else [])
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    epochs = [r["epoch"] for r in rows]
    for axis, metric in zip(axes, panels):
        axis.plot(epochs, [r[metric] for r in rows], "o-", label="training")
        if any(r.get("val_" + metric) is not None for r in rows):
            axis.plot(epochs, [r["val_" + metric] for r in rows], "o-", label="validation")
        axis.set(xlabel="epoch", ylabel=metric.replace("_", " "), title=metric.replace("_", " "))
        axis.grid(alpha=0.3)
        if metric == "learning_rate":
            axis.set_yscale("log")
        else:
            axis.legend()
    save(figure, path)


def save(figure, path):
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot().close(figure)


def predicted_classes(logits):
    logits = np.asarray(logits)
    return (logits[:, 0] > 0).astype(int) if logits.shape[1] == 1 else logits.argmax(axis=1)


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


def plot_confusion(counts, names, path):
    plt = pyplot()
    size = max(4, 0.5 * len(names) + 2)
    figure, axis = plt.subplots(figsize=(size + 1, size))
    image = axis.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=axis, label="test examples")
    ticks = range(len(names))
    axis.set_xticks(ticks, names, rotation=45 if max(map(len, names)) > 2 else 0, ha="right")
    axis.set_yticks(ticks, names)
    axis.set(xlabel="predicted class", ylabel="true class", title="test set: true vs predicted")
    if len(names) <= 20:
        middle = counts.max() / 2
        for (i, j), count in np.ndenumerate(counts):
            color = "white" if count > middle else "black"
            axis.text(j, i, str(count), ha="center", va="center", color=color, fontsize=8)
    save(figure, path)


def plot_samples(images, y_true, y_predicted, names, path, count=24):
    """Test images with predicted and true class, mistakes first."""
    plt = pyplot()
    wrong = np.flatnonzero(y_true != y_predicted)
    right = np.flatnonzero(y_true == y_predicted)
    shown = np.concatenate([wrong, right])[:count]
    columns = 8
    figure, axes = plt.subplots(
        -(-len(shown) // columns), columns, figsize=(2 * columns, 2.3 * -(-len(shown) // columns))
    )
    for axis in np.ravel(axes):
        axis.axis("off")
    for axis, i in zip(np.ravel(axes), shown):
        axis.imshow(images[i], cmap="gray")
        mistake = y_true[i] != y_predicted[i]
        title = f"{names[y_predicted[i]]}" + (f" (true {names[y_true[i]]})" if mistake else "")
        axis.set_title(title, color="red" if mistake else "black", fontsize=9)
    save(figure, path)


def versions():
    backend = keras.backend.backend()
    found = {
        "python": platform.python_version(),
        "keras": keras.__version__,
        "numpy": np.__version__,
        backend: backend_version(backend),
    }
    if backend != "tensorflow":
        try:
            found["tensorflow"] = __import__("tensorflow").__version__
        except ImportError:
            found["tensorflow"] = None
    return found


def reload_difference(model, path, x):
    """How far the saved file's predictions are from the trained model's (0: the same)."""
    reloaded = keras.saving.load_model(path, safe_mode=True)
    sample = x[:EVAL_BATCH_SIZE]
    expected = model.predict(sample, verbose=0, batch_size=EVAL_BATCH_SIZE)
    found = reloaded.predict(sample, verbose=0, batch_size=EVAL_BATCH_SIZE)
    return float(np.abs(np.asarray(found) - np.asarray(expected)).max())
