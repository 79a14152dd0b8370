"""A mutation check of the promises the docs make: each mutant breaks one behaviour with one
small edit, the tests that should notice run, and the mutant is "killed" (a test failed) or
"SURVIVED". It works on a copy of the project, so the repository is never left mutated.

    python tools/mutation_check.py              # every mutant
    python tools/mutation_check.py --list
    python tools/mutation_check.py 3 7          # only these

Before mutating, the test files the mutants select must pass on the unmutated copy (else a
failing test would count as a kill), and every mutant's text must appear exactly once in
its file (else the tool is out of date): either is a failure of the tool, exit code 2.
Survivors exit 1.
"""

import argparse
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutant:
    what: str
    file: str
    original: str
    mutated: str
    tests: str


R, D, T, F, P, S = (
    "rnn_scripts/rundir.py", "rnn_scripts/data/core.py", "rnn_scripts/training.py",
    "rnn_scripts/feed.py", "rnn_scripts/predict.py", "rnn_scripts/serving.py",
)  # fmt: skip
MUTANTS = [
    # The run folder
    Mutant("a second run may take a live run's folder", R,
           "fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)", "pass",
           "tests/test_rundir.py -k 'live_run or overwrite_keeps'"),
    Mutant("--overwrite deletes the lock it holds", R,
           "            if item.name == LOCK_FILE or", "            if False or",
           "tests/test_rundir.py -k overwrite_keeps"),
    Mutant("a failed write leaves its partial file", R,
           "            partial.unlink(missing_ok=True)\n", "",
           "tests/test_rundir.py -k 'full_disk or file_size'"),
    Mutant("only one state is kept", R, "STATES_KEPT = 2", "STATES_KEPT = 1",
           "tests/test_resume.py -k 'two_states or last_two'"),
    Mutant("three states are kept", R, "STATES_KEPT = 2", "STATES_KEPT = 3",
           "tests/test_resume.py -k last_two"),
    Mutant("a state is not read back before it replaces the last one", R,
           "                read_state(path)  # it must read back before it replaces anything", "                pass",
           "tests/test_rundir.py -k read_back"),
    Mutant("a finished run is not recognised", R,
           "return (self.path / METRICS_FILE).exists()", "return False",
           "tests/test_rundir.py -k 'finished_run_is_kept'"),
    Mutant("default folder names collide", R,
           'suffix = "" if number == 1 else f"-{number}"', 'suffix = ""',
           "tests/test_rundir.py -k 'folder_names or two_runs_started'"),
    Mutant("the resume hint is not quoted for the shell", R,
           'f"python {shlex.quote(script)} --resume {shlex.quote(str(self.path))}"', 'f"python {shlex.quote(script)} --resume {self.path}"',
           "tests/test_resume.py -k signal_while_training"),
    Mutant("the lock file stays after a run", R,
           "                (self.path / LOCK_FILE).unlink()", "                pass",
           "tests/test_scripts.py -k 'every_output_and_no_lock and gru'"),
    Mutant("a refused start leaves the folder it made", R,
           "                shutil.rmtree(self.path, ignore_errors=True)", "                pass",
           "tests/test_scripts.py -k leaves_no_folder"),
    Mutant("another script may resume a run", R, "if owner not in (None, script):", "if False:",
           "tests/test_resume.py -k belongs_to_its_script"),
    # Data
    Mutant("a gzip file is inflated whole", "rnn_scripts/data/official.py",
           "body = stream.read(math.prod(shape) + 1)", "body = stream.read()",
           "tests/test_data.py -k gzip_bomb"),
    Mutant("a tiny validation fraction holds out nothing", D,
           "    if fraction and held_out == 0:\n        held_out = 1\n", "",
           "tests/test_data.py -k tiny_fraction"),
    Mutant("NaN in your data is accepted", D,
           'if values.dtype.kind == "f" and not np.isfinite(values).all():', "if False:",
           "tests/test_data.py -k bad_own_npz"),
    Mutant("values float32 cannot hold are accepted", D,
           "if values.size and np.abs(values).max() > MAX_TARGET_VALUE:", "if False:",
           "tests/test_data.py -k bad_own_npz"),
    Mutant("a single class is accepted", D,
           "if not targets.is_regression and len(targets.names) < 2:", "if False:",
           "tests/test_data.py -k bad_own_npz"),
    Mutant("any label value is a class id", D,
           "if largest >= MAX_CLASSES or largest + 1 > 2 * distinct + 10:", "if False:",
           "tests/test_data.py -k bad_own_npz"),
    Mutant("labels are left out of the data's fingerprint", D,
           "            digest.update(np.ascontiguousarray(split_.y).tobytes())\n", "",
           "tests/test_data.py -k fingerprint_changes"),
    Mutant("texts' word ids are read from the wrong rows", "rnn_scripts/data/rows.py",
           "for row in self.rows[rows])", "for row in rows)",
           "tests/test_data.py -k word_ids"),
    Mutant("an npz header is believed", "rnn_scripts/data/arrays.py",
           "    if size != info.file_size - header:", "    if False:",
           "tests/test_data.py -k header_claiming"),
    Mutant("a folder's unlabelled reviews become a class", "rnn_scripts/data/folders.py",
           '            parts["train"] = only_test_classes(parts["train"], parts["test"])', "            pass",
           "tests/test_data.py -k raw_imdb_layout"),
    Mutant("a forecast's target is the last row of its window", "rnn_scripts/data/series.py",
           "series[starts + window + horizon - 1, target]", "series[starts + window - 1, target]",
           "tests/test_data.py -k timeseries_windows"),
    Mutant("features are standardized with the test rows", "rnn_scripts/preprocess.py",
           "vocabulary, word_index, x = None, None, data.train.x", "vocabulary, word_index, x = None, None, data.test.x",
           "tests/test_data.py -k standardized"),
    Mutant("a resume fits the preprocessing again", "rnn_scripts/session.py",
           "if (run_dir.path / SPEC_FILE).is_file() and run_dir.has_unfinished_run():", "if False:",
           "tests/test_resume.py -k saved_preprocessing"),
    # Training and resume
    Mutant("the batch order ignores the seed", F,
           "np.random.default_rng([seed, epoch]).permutation(count)", "np.random.default_rng([epoch]).permutation(count)",
           "tests/test_resume.py -k another_seed"),
    Mutant("the batch order ignores the epoch", F,
           "np.random.default_rng([seed, epoch]).permutation(count)", "np.random.default_rng([seed]).permutation(count)",
           "tests/test_resume.py -k another_seed"),
    Mutant("JAX and torch train the same batch order every epoch", F,
           "        self.rows = list(batch_rows(self.order.next_epoch(), *self.split))\n\n    def __len__", "        pass\n\n    def __len__",
           "tests/test_resume.py -k 'equals_an_uninterrupted_one_on'"),
    Mutant("changed data are not noticed on resume", T,
           'if meta.get("fingerprint") != run.fingerprint and not run.config.allow_data_change:', "if False:",
           "tests/test_resume.py -k changed_data"),
    Mutant("a changed model resumes another model's run", T,
           'if meta.get("architecture") not in (None, run.architecture):', "if False:",
           "tests/test_resume.py -k belongs_to_its_script"),
    Mutant("the optimizer state is not restored", T,
           "        variable.assign(value)\n", "        pass\n",
           "tests/test_resume.py -k sigkill_after_epoch_1"),
    Mutant("a tie counts as a better epoch", T, "score > progress.best", "score >= progress.best",
           "tests/test_schedules.py tests/test_resume.py -k 'early_stopping_stops or best_keras or a_tie'"),
    Mutant("early stopping waits one epoch more", T,
           "epoch + 1 - progress.best_epoch >= patience", "epoch + 1 - progress.best_epoch > patience",
           "tests/test_schedules.py -k early_stopping_stops"),
    Mutant("the plateau counters are not restored", T,
           "                setattr(self.plateau, name, value)", "                pass",
           "tests/test_schedules.py -k plateau_and_early_stopping_resume"),
    Mutant("the plateau waits 3 epochs", T, 'PLATEAU = {"factor": 0.5, "patience": 2,', 'PLATEAU = {"factor": 0.5, "patience": 3,',
           "tests/test_schedules.py -k plateau_halves"),
    Mutant("only a NaN loss stops training", T, "if not math.isfinite(loss):", "if math.isnan(loss):",
           "tests/test_resume.py -k infinite_loss"),
    Mutant("a NaN validation loss is kept as a good epoch", T,
           'if not math.isfinite(row.get("val_loss", 0.0)):', "if False:",
           "tests/test_resume.py -k diverging_run"),
    Mutant("signals are checked only between epochs", T,
           "    def on_train_batch_end(self, batch, logs=None):\n        self.run.check_signals()\n",
           "    def on_train_batch_end(self, batch, logs=None):\n",
           "tests/test_resume.py -k mid_epoch"),
    Mutant("a regression's best epoch has the highest loss", T, "return None if loss is None else -loss", "return loss",
           "tests/test_template.py -k regression_trains"),
    Mutant("a softmax output is trained as logits", T, '    if activation in (None, "linear"):\n        return "logits"',
           '    if True:\n        return "logits"', "tests/test_models.py -k read_as_logits"),
    Mutant("a regression's output is left standardised", T,
           '    if output == "values":\n        layer', '    if False:\n        layer',
           "tests/test_models.py -k targets_units"),
    # The command line and the contract
    Mutant("any argument may change on resume", "rnn_scripts/cli.py",
           "        elif name in CHANGEABLE_ON_RESUME:", "        elif True:",
           "tests/test_cli.py tests/test_resume.py -k 'settle or other_arguments'"),
    Mutant("--tensorboard may not change on resume", "rnn_scripts/cli.py",
           '    "tensorboard",\n    "export",', '    "export",',
           "tests/test_resume.py -k every_flag_that_may_change"),
    Mutant("a resumed run takes the environment's backend", "rnn_scripts/pipeline.py",
           '        backend = saved.get("backend", backend)', "        pass",
           "tests/test_resume.py -k stays_on_jax"),
    Mutant("a model parameter without a default is filled with nothing", "rnn_scripts/contract.py",
           "        elif parameter.default is parameter.empty:", "        elif False:",
           "tests/test_cli.py -k outside_the_contract"),
    Mutant("a bool default makes a text flag", "rnn_scripts/cli.py",
           "        if isinstance(default, bool):", "        if False:",
           "tests/test_cli.py -k every_keyword_with_a_default"),
    Mutant("a signal while Keras loads says nothing", "rnn_scripts/errors.py",
           "            os.write(Interrupts.stderr, message.encode())", "            pass",
           "tests/test_resume.py -k keras_loads"),
    Mutant("run() leaves its signal handlers behind", "rnn_scripts/errors.py",
           "                signal.signal(signum, handler)", "                pass",
           "tests/test_rundir.py -k 'list_of_writes'"),
    Mutant("processes started with other arguments train anyway", "rnn_scripts/cluster.py",
           "        if len(set(everyone[:, column].tolist())) > 1:", "        if False:",
           "tests/test_multiworker.py -k different_arguments"),
    # predict.py and the served model
    Mutant("predict.py swaps a one-logit run's two classes", S,
           "[layers.Rescaling(-1.0, 1.0)(y), y]", "[y, layers.Rescaling(-1.0, 1.0)(y)]",
           "tests/test_predict.py -k one_logit"),
    Mutant("--model best reads model.keras", S,
           '("best.keras" if model == "best" else "model.keras")', '"model.keras"',
           "tests/test_predict.py -k model_best"),
    Mutant("an .npz's x_test is read before its x", P,
           'x = arrays.get("x", arrays.get("x_test"))', 'x = arrays.get("x_test", arrays.get("x"))',
           "tests/test_predict.py -k 'reads_batches'"),
    Mutant("a PNG's transparency is dropped", P,
           "            image = image[..., :-1] * alpha + (1 - alpha)", "            image = image[..., :-1]",
           "tests/test_predict.py -k alpha_compositing"),
    Mutant("word ids up to three past the vocabulary are accepted", P,
           'x.max() >= spec["vocab_size"]', 'x.max() >= spec["vocab_size"] + 3',
           "tests/test_predict.py -k word_ids_of_an_imdb_run"),
    Mutant("raw words beyond the vocabulary keep their ids", "rnn_scripts/preprocess.py",
           'ids = [i if i < self.spec["vocab_size"] else OOV_TOKEN for i in ids]', "",
           "tests/test_predict.py -k rare_words"),
    Mutant("a huge PNG is decoded", P, "    if width * height > MAX_IMAGE_PIXELS:", "    if False:",
           "tests/test_predict.py -k cannot_handle"),
    # The speed-ups
    Mutant("the split GRU cell slices again", "rnn_scripts/speedups/gru_split.py",
           "recurrent_z, recurrent_r, recurrent_h = ops.split(inner, 3, axis=-1)",
           "recurrent_z, recurrent_r, recurrent_h = inner[:, :self.units], inner[:, self.units:-self.units], inner[:, -self.units:]",
           "tests/test_gru_split.py -k slice_gradients"),
    Mutant("the split GRU cell ignores dropout in training", "rnn_scripts/speedups/gru_split.py",
           "inputs = inputs * self.get_dropout_mask(inputs)", "inputs = inputs",
           "tests/test_gru_split.py -k to_the_bit"),
    Mutant("the split GRU cell applies dropout at inference", "rnn_scripts/speedups/gru_split.py",
           "if training and 0.0 < self.dropout < 1.0:", "if 0.0 < self.dropout < 1.0:",
           "tests/test_gru_split.py -k at_inference"),
    Mutant("a speed-up outside its tested versions is installed", "rnn_scripts/speedups/__init__.py",
           "        if found is None or not version(lowest) <= version(found) < version(beyond):", "        if False:",
           "tests/test_speedups.py -k 'not_tested_with or tested_range'"),
    Mutant("a failed self-check keeps the speed-up", "rnn_scripts/speedups/__init__.py",
           "    if problem is not None:\n        module.uninstall()", "    if False:\n        module.uninstall()",
           "tests/test_speedups.py -k self_check_that_fails"),
    Mutant("--fused-kernels off installs them anyway", "rnn_scripts/speedups/__init__.py",
           '    if config.fused_kernels == "off":\n        return {}', '    if False:\n        return {}',
           "tests/test_speedups.py -k 'fused_kernels_off_leaves'"),
    Mutant("the torch adapter runs SimpleRNN dropout on the fused kernel", "rnn_scripts/speedups/torch_fused.py",
           "            or (training and (cell.dropout or cell.recurrent_dropout))\n", "",
           "tests/test_torch_fused.py -k simplernn_dropout"),
]  # fmt: skip


def copy_project(folder):
    shutil.copytree(
        ROOT,
        folder,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            "runs",
            "__pycache__",
            "*.egg-info",
            "build",
            ".hypothesis",
            ".pytest_cache",
        ),
    )


def pytest(folder, tests, stop_early=True):
    command = f"{sys.executable} -m pytest -q -p no:warnings -p no:cacheprovider {'-x ' if stop_early else ''}{tests}"
    return subprocess.run(
        command, shell=True, cwd=folder, capture_output=True, text=True
    )


def baseline_selection(mutants):
    """One pytest selection that holds every test the mutants select: their files, and
    every -k expression joined by "or" (a few more tests than needed, never fewer)."""
    files, expressions = set(), []
    for mutant in mutants:
        paths, _, expression = mutant.tests.partition(" -k ")
        files.update(paths.split())
        expressions.append(expression.strip("'") if expression else "")
    if "" in expressions:  # a mutant that selects whole files: run the files whole
        return " ".join(sorted(files))
    return (
        " ".join(sorted(files))
        + " -k "
        + shlex.quote(" or ".join(f"({e})" for e in expressions))
    )


def stale(mutants, folder):
    return [m for m in mutants if (folder / m.file).read_text().count(m.original) != 1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("numbers", nargs="*", type=int)
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args()
    chosen = [(n, MUTANTS[n]) for n in (args.numbers or range(len(MUTANTS)))]
    if args.list:
        for number, mutant in chosen:
            print(f"{number:2} {mutant.what}  [{mutant.file}]")
        return 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mutation-check-") as temporary:
        folder = Path(temporary) / "project"
        copy_project(folder)
        outdated = stale([m for _, m in chosen], folder)
        if outdated:
            for mutant in outdated:
                print(
                    f"the tool is out of date: {mutant.what!r}: its text is not found once in {mutant.file}"
                )
            return 2
        baseline = pytest(
            folder,
            f"-n auto --dist loadfile {baseline_selection([m for _, m in chosen])}",
            stop_early=False,
        )
        if baseline.returncode != 0:
            print(
                "the selected tests fail without any mutant; fix them first:\n"
                + baseline.stdout[-3000:]
            )
            return 2
        survivors = []
        for number, mutant in chosen:
            print(check(number, mutant, folder, survivors), flush=True)
    minutes = (time.perf_counter() - started) / 60
    print(
        f"{len(chosen) - len(survivors)} of {len(chosen)} mutants killed in {minutes:.0f} minutes"
    )
    return 1 if survivors else 0


def check(number, mutant, folder, survivors):
    path = folder / mutant.file
    source = path.read_text()
    path.write_text(source.replace(mutant.original, mutant.mutated))
    try:
        done = pytest(folder, mutant.tests)
    finally:
        path.write_text(source)
    # pytest: 1 = a test failed (the mutant was noticed); 5 = no test was selected
    verdict = {0: "SURVIVED", 1: "killed"}.get(
        done.returncode, f"ERROR (pytest exit {done.returncode})"
    )
    if verdict != "killed":
        survivors.append(mutant)
    return f"{number:2} {verdict:8} {mutant.what}  [{mutant.tests}]"


if __name__ == "__main__":
    sys.exit(main())
