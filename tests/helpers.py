"""Shared test helpers: run a training script as a subprocess, read what it wrote."""

import contextlib
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = (
    "train_simplernn.py",
    "train_gru.py",
    "train_lstm.py",
    "train_bilstm.py",
    "train_imdb_bilstm.py",
)
MNIST_SCRIPTS = SCRIPTS[:4]
SHORT_NAMES = {s: s.removeprefix("train_").removesuffix(".py") for s in SCRIPTS}
_KERAS_HOME = tempfile.mkdtemp(prefix="rnn-scripts-keras-home-")


def script_env(env=None, **overrides):
    """os.environ plus `env`: KERAS_HOME in a temp dir (no download cache), no TF_CONFIG,
    no KERAS_BACKEND and no CPU split unless the caller sets them, and the repository on
    PYTHONPATH (as if the package were installed) for scripts copied elsewhere."""
    merged = dict(os.environ)
    for name in ("TF_CONFIG", "KERAS_BACKEND", "RNN_SCRIPTS_CPU_DEVICES", "XLA_FLAGS"):
        merged.pop(name, None)
    merged["KERAS_HOME"] = _KERAS_HOME
    merged["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), (env or {}).get("PYTHONPATH")) if p
    )
    merged.update({k: v for k, v in (env or {}).items() if k != "PYTHONPATH"})
    merged.update(overrides)
    return merged


def run_script(name, *args, env=None, cwd=None, timeout=600, **options):
    """Run the script `name` (e.g. "train_lstm.py") with `args` under sys.executable.

    Returns the subprocess.CompletedProcess with text stdout and stderr. `env` adds to (and
    overrides) the environment built by script_env(); cwd defaults to a fresh temp dir.
    """
    return subprocess.run(
        **_launch(name, args, env, cwd), capture_output=True, timeout=timeout, **options
    )


STARTED = []  # the processes of start_script; conftest.py kills any that outlives its test


def start_script(name, *args, env=None, cwd=None):
    """Like run_script, but returns the running subprocess.Popen (text pipes)."""
    process = subprocess.Popen(
        **_launch(name, args, env, cwd), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    STARTED.append(process)
    return process


# The default working folders of launched scripts live here, removed when the test process ends.
_SCRATCH = tempfile.TemporaryDirectory(prefix="rnn-scripts-cwd-")


def _launch(name, args, env, cwd):
    command = [sys.executable, str(ROOT / name), *(str(a) for a in args)]
    cwd = cwd or tempfile.mkdtemp(dir=_SCRATCH.name)
    return {"args": command, "cwd": cwd, "env": script_env(env), "text": True}


def explain(result):
    """The tail of a finished run's output, for assertion messages."""
    return (
        f"exit {result.returncode}\n--- stdout ---\n{result.stdout[-3000:]}"
        f"\n--- stderr ---\n{result.stderr[-3000:]}"
    )


def read_metrics(out):
    return json.loads((Path(out) / "metrics.json").read_text())


def read_history(out):
    with open(Path(out) / "history.csv", newline="") as stream:
        return [
            {k: (float(v) if v else None) for k, v in row.items()}
            for row in csv.DictReader(stream)
        ]


def importable(module):
    """True when `module` can be imported (checked without importing it here)."""
    import importlib.util

    return importlib.util.find_spec(module) is not None


def help_defaults(script):
    """{flag: default text or None} as `SCRIPT --help` prints them."""
    import re

    result = run_script(script, "--help")
    assert result.returncode == 0, explain(result)
    found, flag, text = {}, None, ""
    for line in result.stdout.splitlines() + [""]:
        start = re.match(r"^  (--[a-z-]+)", line)
        if start or not line.startswith("   "):
            if flag:
                default = re.search(r"\(default: ([^)]*)\)\s*$", " ".join(text.split()))
                found[flag] = default.group(1) if default else None
            flag, text = (start.group(1), line[start.end() :]) if start else (None, "")
        else:
            text += " " + line
    return found


def copy_script(script, folder, edit=lambda text: text, name=None):
    """A script copied as a template: the script (edited) and common.py, into folder."""
    import shutil

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / (name or script)
    target.write_text(edit((ROOT / script).read_text()))
    shutil.copy(ROOT / "common.py", folder / "common.py")
    return target


def without_backends(folder):
    """An environment in which importing TensorFlow, JAX or torch fails (fake packages
    first on the path): what answers there never loaded a backend."""
    fakes = Path(folder) / "no-backends"
    for name in ("tensorflow", "jax", "torch"):
        (fakes / name).mkdir(parents=True, exist_ok=True)
        (fakes / name / "__init__.py").write_text(
            'raise ImportError("backend unavailable in this test")\n'
        )
    return {"PYTHONPATH": str(fakes)}


def load_model(path):
    import keras

    return keras.saving.load_model(path, safe_mode=True)


def assert_same_weights(first, second, name="model.keras", atol=1e-6):
    """The two runs' saved models hold the same weights (1e-6: reduction-order rounding)."""
    import numpy as np

    for a, b in zip(
        load_model(Path(first) / name).get_weights(),
        load_model(Path(second) / name).get_weights(),
    ):
        np.testing.assert_allclose(a, b, rtol=0, atol=atol)


MODEL_NAMES = {
    "LSTM": "lstm",
    "GRU": "gru",
    "BiLSTM": "bilstm",
    "SimpleRNN": "simplernn",
    "IMDB BiLSTM": "imdb_bilstm",
}
BACKEND_NAMES = {
    "TensorFlow": "tensorflow",
    "JAX": "jax",
    "torch": "torch",
    "native PyTorch": "pytorch",
}


def documented_speeds():
    """{model: {backend: training samples/s}} from docs/performance.md's per-model table."""
    import re

    text = (
        (ROOT / "docs" / "performance.md")
        .read_text()
        .split("## Per model", 1)[1]
        .split("\n## ", 1)[0]
    )
    found = {}
    for model, backend, speed in re.findall(
        r"^\| ([A-Za-z ]+?) \| ([A-Za-z ]+?) \| \**([\d,]+)\**", text, re.MULTILINE
    ):
        if model in MODEL_NAMES and backend in BACKEND_NAMES:
            found.setdefault(MODEL_NAMES[model], {})[BACKEND_NAMES[backend]] = int(
                speed.replace(",", "")
            )
    return found


@contextlib.contextmanager
def memory_limit(extra_bytes):
    """Inside the block this process may map at most `extra_bytes` more memory: a runaway
    allocation raises MemoryError (a failed test) instead of taking the machine."""
    import resource

    size = next(
        int(line.split()[1]) * 1024
        for line in open("/proc/self/status")
        if line.startswith("VmSize:")
    )
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (size + extra_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
