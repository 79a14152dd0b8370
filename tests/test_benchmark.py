"""tools/benchmark.py runs end to end and reports figures that make sense (the quick mode).

Slow by design (every run of the suite ends with this file's seconds): tools/benchmark.py
--quick times real training rounds in alternating processes.
"""

import importlib.util
import json
import subprocess
import sys

from pytest import approx

from helpers import ROOT


def test_quick_benchmark_alternates_processes_and_reports_medians_and_ranges(tmp_path):
    out, table = tmp_path / "b.json", tmp_path / "speeds.json"
    command = [
        sys.executable,
        str(ROOT / "tools" / "benchmark.py"),
        "--quick",
        "--json",
        str(out),
        "--speed-table",
        str(table),
    ]
    done = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    figures = report["results"]["lstm"]
    expected = {"tensorflow ours", "tensorflow baseline"}
    if importlib.util.find_spec("torch") is not None:
        expected.add("pytorch")
    assert set(figures["variants"]) == expected
    assert figures["variants"]["tensorflow ours"]["backend"] == "tensorflow"
    for row in figures["variants"].values():
        assert len(row["train_per_round"]) == len(row["eval_per_round"]) == 2
        assert min(row["train_per_round"]) <= row["train"] <= max(row["train_per_round"])
        assert row["train"] > 0 and row["eval"] > 0 and row["percent_of_peak"] > 0
    # Both TensorFlow variants train one model (same FLOPs per sample): their shares of the
    # matrix-product peak compare as their speeds. (The peak itself is measured while other
    # tests may load the CPU, so no upper bound holds here.)
    ours, baseline = (
        figures["variants"]["tensorflow ours"],
        figures["variants"]["tensorflow baseline"],
    )
    assert ours["percent_of_peak"] / baseline["percent_of_peak"] == approx(
        ours["train"] / baseline["train"]
    )
    ratio = figures["ratios"]["tensorflow ours / tensorflow baseline train"]
    assert 0 < ratio["min"] <= ratio["median"] <= ratio["max"]
    if "pytorch" in expected:
        assert figures["ratios"]["tensorflow ours / pytorch eval"]["median"] > 0
    assert report["hardware"]["cores"] >= 1 and report["versions"]["keras"]
    assert "tensorflow ours / tensorflow baseline train" in done.stdout
    speeds = json.loads(table.read_text())  # the start-up note's table, in the same run
    assert speeds["models"]["lstm"]["parameters"] == 819_722
    assert speeds["models"]["lstm"]["samples_per_second"]["tensorflow"] == round(
        ours["train"]
    )
    assert speeds["measured_with"].startswith("python tools/benchmark.py --quick")
