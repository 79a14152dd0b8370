"""Several script runs in one new process, for a test that needs a backend other than the
test process's TensorFlow: the backend is imported once, and each run goes through
helpers.run_here (the script's own file as __main__), so that they pay one start-up.

    python tests/in_one_process.py STEPS.json RESULTS.json

STEPS.json: [{"script": ..., "args": [...], "env": {...}, "until_epoch": N or null}, ...];
a step whose script is "predict.py" calls predict.py's main (helpers.predict_here).
RESULTS.json: [{"returncode": ..., "stdout": ..., "stderr": ...}, ...], one per step.
"""

import json
import sys
from pathlib import Path

sys.path[:0] = [
    str(Path(__file__).resolve().parent),
    str(Path(__file__).resolve().parents[1]),
]

from helpers import call_here, run_here, run_until_epoch  # noqa: E402


def main(steps_file, results_file):
    results = []
    for step in json.loads(Path(steps_file).read_text()):
        if step["script"] == "predict.py":
            from rnn_scripts.predict import main as predict

            done = call_here(predict, step["args"])
            results.append(
                {
                    "returncode": done.returncode,
                    "stdout": done.stdout,
                    "stderr": done.stderr,
                }
            )
            continue
        if step.get("until_epoch"):
            out, args = step["args"][-1], step["args"][:-2]  # ..., "--output-dir", OUT
            run_until_epoch(
                step["script"], args, out, step["until_epoch"], any_backend=True
            )
            results.append({"returncode": None, "stdout": "", "stderr": ""})
            continue
        done = run_here(
            step["script"], *step["args"], env=step.get("env"), any_backend=True
        )
        results.append(
            {"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}
        )
    Path(results_file).write_text(json.dumps(results))


if __name__ == "__main__":
    main(*sys.argv[1:])
