"""Export a finished run for serving: the model takes raw inputs (the preprocessing is
inside) and returns class probabilities, or values.

    python export.py RUN                          # RUN/export/saved_model (TensorFlow)
    python export.py RUN --format onnx            # RUN/export/model.onnx (onnxruntime)
    python train_lstm.py --export onnx ...        # the same at the end of training

What each format takes: pixels 0-255 or unscaled features as float32 (the scaling is a
Rescaling layer inside); SavedModel text runs take strings (TextVectorization inside).
ONNX has no string operations, so an ONNX text model takes word ids: vectorize with the
vocabulary.json beside it (serving.json says so, and for a series its columns, window and
horizon). The export is made with model.export on the TensorFlow backend, whatever
backend trained the run (model.keras loads on every backend): a run on JAX or torch is
exported by a TensorFlow subprocess.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

from .errors import EXIT_FAILED, UserError, fail, first_line

FORMATS = {
    "saved_model": ("tf_saved_model", "saved_model"),
    "onnx": ("onnx", "model.onnx"),
}
EXPORT_DIR = "export"
ONNX_EXTRA = (
    'pip install "rnn-scripts[export]" (or, in this repository, pip install '
    "-r requirements-export.txt); onnxruntime runs the exported file"
)


def check_exporter(formats):
    """One line now, rather than after training, if a format's converter is missing."""
    import importlib.util

    if "onnx" in formats and importlib.util.find_spec("tf2onnx") is None:
        raise UserError(f"--export onnx needs tf2onnx: {ONNX_EXTRA}")


def export_run(folder, formats, model="final", output=None):
    """Write each format into output (default RUN/export); returns the paths written."""
    import keras

    folder = Path(folder)
    output = Path(output) if output else folder / EXPORT_DIR
    check_exporter(formats)
    try:
        output.mkdir(parents=True, exist_ok=True)
        probe = output / ".written"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise UserError(f"cannot write to {output}: {error.strerror or error}") from None
    if keras.backend.backend() != "tensorflow":
        return export_in_tensorflow(folder, formats, model, output)
    from .serving import TrainedRun

    run = TrainedRun(folder, model)
    written = [write_format(run, name, output) for name in formats]
    (output / "serving.json").write_text(json.dumps(description(run, formats), indent=2))
    return written


def write_format(run, name, output):
    keras_format, file_name = FORMATS[name]
    path = output / file_name
    if path.is_dir():
        shutil.rmtree(path)
    model = run.kind.for_export(run.serving_model(), name)
    if run.kind.vocabulary is not None and name == "onnx":  # the server vectorizes
        (output / "vocabulary.json").write_text(json.dumps(run.kind.vocabulary))
    try:
        # Keras' ONNX export wants a model that has been called
        model(dummy_batch(model))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # tf2onnx's np.object probe
            model.export(str(path), format=keras_format, verbose=False)
    except OSError as error:
        raise UserError(
            f"could not write {path}: {error.strerror or first_line(error)}"
        ) from None
    except Exception as error:  # the converters raise many kinds
        raise UserError(
            f"could not export {run.folder} as {name} ({first_line(error)})"
        ) from None
    return path


def dummy_batch(model):
    import numpy as np

    spec = model.inputs[0]
    shape = [1 if size is None else size for size in spec.shape]
    return (
        np.array([""], dtype=object)
        if spec.dtype == "string"
        else np.zeros(shape, spec.dtype)
    )


def description(run, formats):
    preprocessing = run.preprocessing
    names = ", ".join(preprocessing.class_names)
    kind = "values of" if preprocessing.is_regression else "probabilities of the classes"
    described = {
        "formats": sorted(formats),
        "input": run.kind.describe_input(),
        "output": f"{kind} {names}",
        "classes"
        if not preprocessing.is_regression
        else "targets": preprocessing.class_names,
    }
    if "series" in preprocessing.spec:
        described["series"] = preprocessing.spec[
            "series"
        ]  # columns, target, window, horizon
    return described


def export_in_tensorflow(folder, formats, model, output):
    command = [sys.executable, "-m", "rnn_scripts.export", str(folder), "--model", model]
    command += ["--output", str(output)] + [
        a for name in formats for a in ("--format", name)
    ]
    environment = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    done = subprocess.run(command, env=environment, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"the TensorFlow export of {folder} failed: {last}")
    return [output / FORMATS[name][1] for name in formats]


def parse_arguments(argv):
    from .cli import OneLineParser

    parser = OneLineParser(
        prog="export.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    add = parser.add_argument
    add("run_dir", type=Path, metavar="RUN", help="a finished run's folder")
    add(
        "--format",
        action="append",
        choices=sorted(FORMATS),
        help="saved_model (default) or onnx; repeat for both",
    )
    add(
        "--model",
        choices=("final", "best"),
        default="final",
        help="model.keras or best.keras",
    )
    add("--output", type=Path, help="where to write (default RUN/export)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_arguments(sys.argv[1:] if argv is None else argv)
    try:
        if not args.run_dir.is_dir():
            raise UserError(f"no run folder {args.run_dir}")
        from .environment import quiet_keras

        quiet_keras(os.environ.get("KERAS_BACKEND", "tensorflow"))
        formats = sorted(set(args.format or ["saved_model"]))
        for path in export_run(args.run_dir, formats, args.model, args.output):
            print(f"wrote {path}")
    except UserError as error:
        fail(f"error: {error}", EXIT_FAILED)


if __name__ == "__main__":
    main()
