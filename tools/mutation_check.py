"""A hand-run mutation check of the run-folder, data and resume code and the split GRU
cell: each mutant flips one condition the README promises, runs the tests that should
notice, and reports whether they did ("killed") or not ("SURVIVED"). The source is
restored after every mutant.

    python tools/mutation_check.py              # every mutant (about 6 minutes on 2 cores)
    python tools/mutation_check.py --list
    python tools/mutation_check.py 3 7          # only these
"""

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (what it breaks, file, original text, mutated text, tests that should fail)
MUTANTS = [
    ("a second run may take a live run's folder", "rnn_scripts/rundir.py",
     "fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)", "pass",
     "tests/test_rundir.py::test_a_second_run_or_an_overwrite_of_a_live_run_is_refused_naming_the_holder"),
    ("a failed write leaves its partial file", "rnn_scripts/rundir.py",
     "            partial.unlink(missing_ok=True)\n", "",
     "tests/test_rundir.py -k 'full_disk or file_size'"),
    ("only one state is kept", "rnn_scripts/rundir.py",
     "STATES_KEPT = 2", "STATES_KEPT = 1",
     "tests/test_resume.py::test_two_states_are_kept_and_a_damaged_one_falls_back_to_the_one_before"),
    ("a state is not read back before it replaces the last one", "rnn_scripts/rundir.py",
     "                read_state(path)  # it must read back before it replaces anything", "                pass",
     "tests/test_rundir.py -k 'read_back'"),
    ("a finished run is not recognised", "rnn_scripts/rundir.py",
     "return (self.path / METRICS_FILE).exists()", "return False",
     "tests/test_rundir.py tests/test_resume.py -k 'overwrite or finished or final_line'"),
    ("default folder names collide", "rnn_scripts/rundir.py",
     'suffix = "" if number == 1 else f"-{number}"', 'suffix = ""',
     "tests/test_rundir.py -k 'folder_names or two_runs_started'"),
    ("the resume hint is not quoted for the shell", "rnn_scripts/rundir.py",
     "--resume {shlex.quote(str(self.path))}", "--resume {self.path}",
     "tests/test_resume.py -k 'signal_while_training'"),
    ("a gzip file is inflated whole", "rnn_scripts/data.py",
     "body = stream.read(math.prod(shape) + 1)", "body = stream.read()",
     "tests/test_data.py -k 'gzip_bomb'"),
    ("a tiny validation fraction holds out nothing", "rnn_scripts/data.py",
     "    if fraction and held_out == 0:\n        held_out = 1\n", "",
     "tests/test_data.py -k 'tiny_fraction'"),
    ("NaN in your data is accepted", "rnn_scripts/data.py",
     'if kind == "sequences" and not np.isfinite(x).all():', "if False:",
     "tests/test_data.py -k 'bad_own_npz'"),
    ("a single class is accepted", "rnn_scripts/data.py",
     "if len(np.unique(y_train)) < 2:", "if False:",
     "tests/test_data.py -k 'bad_own_npz'"),
    ("the batch order ignores the seed", "rnn_scripts/training.py",
     "np.random.default_rng([seed, epoch]).permutation(count)", "np.random.default_rng([epoch]).permutation(count)",
     "tests/test_resume.py -k 'another_seed'"),
    ("the batch order ignores the epoch", "rnn_scripts/training.py",
     "np.random.default_rng([seed, epoch]).permutation(count)", "np.random.default_rng([seed]).permutation(count)",
     "tests/test_resume.py -k 'another_seed'"),
    ("changed data are not noticed on resume", "rnn_scripts/training.py",
     'if meta.get("fingerprint") != fingerprint and not allow_data_change:', "if False:",
     "tests/test_resume.py -k 'changed_data'"),
    ("the optimizer state is not restored", "rnn_scripts/training.py",
     "        variable.assign(value)\n", "        pass\n",
     "tests/test_resume.py -k 'sigkill_after_epoch_1'"),
    ("a tie counts as a better epoch", "rnn_scripts/training.py",
     "score > progress.best", "score >= progress.best",
     "tests/test_schedules.py tests/test_resume.py -k 'early_stopping_stops or best_keras'"),
    ("early stopping waits one epoch more", "rnn_scripts/training.py",
     "epoch + 1 - progress.best_epoch >= patience", "epoch + 1 - progress.best_epoch > patience",
     "tests/test_schedules.py -k 'early_stopping_stops'"),
    ("the plateau counters are not restored", "rnn_scripts/training.py",
     "                setattr(self.plateau, name, value)", "                pass",
     "tests/test_schedules.py -k 'plateau_and_early_stopping_resume'"),
    ("any argument may change on resume", "rnn_scripts/cli.py",
     "        elif name in CHANGEABLE_ON_RESUME:", "        elif True:",
     "tests/test_cli.py tests/test_resume.py -k 'settle or other_arguments'"),
    ("a resumed run takes the environment's backend", "rnn_scripts/environment.py",
     "    if saved in BACKENDS:\n        return saved\n", "",
     "tests/test_resume.py -k 'stays_on_jax'"),
    ("a signal while Keras loads says nothing", "rnn_scripts/errors.py",
     "            os.write(cls.stderr, message.encode())", "            pass",
     "tests/test_resume.py -k 'keras_loads'"),
    ("features are standardized with the test rows", "rnn_scripts/preprocess.py",
     "mean, std = data.x_train.mean(axis=(0, 1)), data.x_train.std(axis=(0, 1))",
     "mean, std = data.x_test.mean(axis=(0, 1)), data.x_test.std(axis=(0, 1))",
     "tests/test_data.py -k 'standardized'"),
    ("the split GRU cell slices again", "rnn_scripts/gru_split.py",
     "recurrent_z, recurrent_r, recurrent_h = ops.split(inner, 3, axis=-1)",
     "recurrent_z, recurrent_r, recurrent_h = inner[:, :self.units], inner[:, self.units:-self.units], inner[:, -self.units:]",
     "tests/test_gru_split.py -k 'slice_gradients'"),
    ("the split GRU cell ignores dropout", "rnn_scripts/gru_split.py",
     "inputs = inputs * self.get_dropout_mask(inputs)", "inputs = inputs",
     "tests/test_gru_split.py -k 'to_the_bit'"),
]  # fmt: skip


def run(number, mutant):
    what, name, original, mutated, tests = mutant
    path = ROOT / name
    source = path.read_text()
    if source.count(original) != 1:
        return f"{number:2} NOT APPLIED ({what}): the original text is not found once in {name}"
    path.write_text(source.replace(original, mutated))
    try:
        command = f"{sys.executable} -m pytest -q -x -p no:warnings {tests}"
        done = subprocess.run(command, shell=True, cwd=ROOT, capture_output=True, text=True)
    finally:
        path.write_text(source)
    # pytest: 1 = a test failed (the mutant was noticed); 5 = no test was selected
    verdict = {0: "SURVIVED", 1: "killed"}.get(done.returncode, f"ERROR (pytest exit {done.returncode})")
    return f"{number:2} {verdict:8} {what}  [{tests}]"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("numbers", nargs="*", type=int)
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args()
    chosen = args.numbers or range(len(MUTANTS))
    for number in chosen:
        if args.list:
            print(f"{number:2} {MUTANTS[number][0]}")
        else:
            print(run(number, MUTANTS[number]), flush=True)


if __name__ == "__main__":
    main()
