"""benchmark.py runs end to end and writes figures that make sense (the quick mode)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_benchmark_writes_positive_figures(tmp_path):
    out = tmp_path / "x.json"
    command = [
        sys.executable,
        str(ROOT / "benchmark.py"),
        "--quick",
        "--models",
        "lstm",
    ]
    command += ["--backend", "tensorflow", "--json", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    figures = report["results"]["tensorflow"]["lstm"]
    assert "error" not in figures, figures
    expected = {"ours", "baseline"}
    if importlib.util.find_spec("torch") is not None:
        expected.add("pytorch")
    assert set(figures["variants"]) == expected
    for row in figures["variants"].values():
        assert row["train_samples_per_s"] > 0 and row["eval_samples_per_s"] > 0
    ratios = figures["ratios"]
    assert ratios["ours/baseline"] > 0 and ratios["ours/baseline eval"] > 0
    if "pytorch" in expected:
        assert ratios["ours/pytorch"] > 0
    assert report["hardware"]["cores"] >= 1 and report["versions"]["keras"]
