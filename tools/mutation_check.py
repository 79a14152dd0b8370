"""A mutation check of the promises the docs make: each mutant breaks one behaviour with
one small edit, the tests that should notice run, and the mutant is "killed" (a test
failed) or "SURVIVED". It works on a copy of the project, so the repository is never
left mutated.

    python tools/mutation_check.py              # every mutant
    python tools/mutation_check.py --list
    python tools/mutation_check.py 3 7          # only these
    python tools/mutation_check.py --jobs 2     # two mutants at a time, on two copies

Before mutating, the test files the mutants select must pass on the unmutated copy (else
a failing test would count as a kill), and every mutant's text must appear exactly once
in its file (else the tool is out of date): either is a failure of the tool, exit code 2.
Survivors exit 1.
"""

import argparse
import queue
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
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


R, D, T, F, K, S = (
    "rnn_scripts/rundir.py",
    "rnn_scripts/data/core.py",
    "rnn_scripts/training.py",
    "rnn_scripts/feed.py",
    "rnn_scripts/kinds.py",
    "rnn_scripts/serving.py",
)
RESUME, OWN, SPEEDUPS = (
    "rnn_scripts/resume.py",
    "rnn_scripts/data/own.py",
    "rnn_scripts/speedups/__init__.py",
)
GRU_SPLIT = "rnn_scripts/speedups/gru_split.py"
UNITS = "tests/test_data.py tests/test_template.py -k " + repr(
    "regression_with_values or regression_trains"
)


def m(what, file, original, mutated, tests):
    return Mutant(what, file, original, mutated, tests)


MUTANTS = [
    # The run folder
    m("a second run may take a live run's folder", R,
      "fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)", "pass",
      "tests/test_rundir.py -k live_run"),
    m("--overwrite deletes the lock it holds", R,
      "                or item.name == LOCK_FILE\n", "",
      "tests/test_rundir.py -k 'live_run or finished_run_is_kept'"),
    m("a failed write leaves its partial file", R,
      "            partial.unlink(missing_ok=True)\n", "",
      "tests/test_rundir.py -k 'full_disk or file_size'"),
    m("only one state is kept", R, "STATES_KEPT = 2", "STATES_KEPT = 1",
      "tests/test_resume.py -k two_states"),
    m("three states are kept", R, "STATES_KEPT = 2", "STATES_KEPT = 3",
      "tests/test_resume.py -k two_states"),
    m("a state is not read back before it replaces the last one", R,
      "                read_state(path)  # it must read back", "                pass  #",
      "tests/test_rundir.py -k read_back"),
    m("a finished run is not recognised", R,
      "return (self.path / METRICS_FILE).exists()", "return False",
      "tests/test_rundir.py -k finished_run_is_kept"),
    m("default folder names collide", R,
      'suffix = "" if number == 1 else f"-{number}"', 'suffix = ""',
      "tests/test_rundir.py -k 'folder_names or two_runs_started'"),
    m("the resume hint is not quoted for the shell", R,
      '"python {shlex.quote(script)} --resume {shlex.quote(str(self.path))}"',
      '"python {shlex.quote(script)} --resume {self.path}"',
      "tests/test_resume.py -k signal_while_training"),
    m("the lock file stays after a run", R,
      "                (self.path / LOCK_FILE).unlink()", "                pass",
      "tests/test_scripts.py -k every_output_and_no_lock"),
    m("a refused start leaves the folder it made", R,
      "                shutil.rmtree(self.path, ignore_errors=True)",
      "                pass",
      "tests/test_scripts.py -k leaves_no_folder"),
    m("a refused start leaves the runs/ folder it made", R,
      "for folder in self.made[1:]:", "for folder in []:",
      "tests/test_rundir.py -k bad_data_file"),
    m("another script may resume a run", R,
      "        if owner not in (None, script):", "        if False:",
      "tests/test_resume.py -k belongs_to_its_script"),
    m("--overwrite empties a folder that holds no run", R,
      "        if overwrite and owner is None and self.foreign():",
      "        if False:",
      "tests/test_rundir.py -k overwrite_never_empties"),
    m("--overwrite removes files no run writes", R,
      "                not run_file(item.name)\n                or", "                ",
      "tests/test_rundir.py -k overwrite_never_empties"),
    # Data
    m("a gzip file is inflated whole", "rnn_scripts/data/official.py",
      "body = stream.read(math.prod(shape) + 1)", "body = stream.read()",
      "tests/test_data.py -k gzip_bomb"),
    m("a tiny validation fraction holds out nothing", D,
      "    if fraction and held_out == 0:\n        held_out = 1\n", "",
      "tests/test_data.py -k tiny_fraction"),
    m("NaN in your data is accepted", D,
      'if values.dtype.kind == "f" and not np.isfinite(values).all():', "if False:",
      "tests/test_data.py -k bad_own_npz"),
    m("values float32 cannot hold are accepted", D,
      "if values.size and np.abs(values).max() > MAX_TARGET_VALUE:", "if False:",
      "tests/test_data.py -k bad_own_npz"),
    m("a single class is accepted", D,
      "if not targets.is_regression and len(targets.names) < 2:", "if False:",
      "tests/test_data.py -k bad_own_npz"),
    m("any label value is a class id", D,
      "if largest >= MAX_CLASSES or largest + 1 > 2 * distinct + 10:", "if False:",
      "tests/test_data.py -k bad_own_npz"),
    m("labels are left out of the data's fingerprint", D,
      "            digest.update(np.ascontiguousarray(split_.y).tobytes())\n", "",
      "tests/test_data.py -k fingerprint_changes"),
    m("the kind is left out of the data's fingerprint", D,
      "digest = hashlib.sha256(self.kind.name.encode())",
      "digest = hashlib.sha256()",
      "tests/test_data.py -k every_field_that_defines"),
    m("the task, names and series are left out of the fingerprint", D,
      "described = [self.targets.task, list(self.targets.names), self.series]",
      "described = []",
      "tests/test_data.py -k every_field_that_defines"),
    m("a separate file's class beyond the training classes is accepted", D,
      "    if ids.max() >= len(train.names):", "    if False:",
      "tests/test_data.py -k beyond_the_training_classes"),
    m("whole-number float labels are classes without being asked", D,
      "    if whole:\n        return (\n            \"regression\"",
      "    if whole:\n        return (\n            \"classification\"",
      "tests/test_data.py -k whole_number"),
    m("--task regression is ignored for integer labels", D,
      '    if task == "regression":\n        targets, values',
      '    if False:\n        targets, values',
      "tests/test_data.py -k task_regression"),
    m("texts' word ids are read from the wrong rows", "rnn_scripts/data/rows.py",
      "for row in self.rows[rows])", "for row in rows)",
      "tests/test_data.py -k word_ids"),
    m("an npz header is believed", "rnn_scripts/data/arrays.py",
      "    if size != info.file_size - header:", "    if False:",
      "tests/test_data.py -k header_claiming"),
    m("a separate file's x_train is read before its x_test", OWN,
      '"test": (2, 1, 3, 0)', '"test": (0, 1, 3, 2)',
      "tests/test_data.py -k any_one_pair"),
    m("a folder's unlabelled reviews become a class", "rnn_scripts/data/folders.py",
      '            parts["train"] = only_test_classes(parts["train"], parts["test"])',
      "            pass",
      "tests/test_data.py -k raw_imdb_layout"),
    m("a folder's files are labelled with the next folder's class",
      "rnn_scripts/data/folders.py",
      "        labels += [name] * len(files)",
      "        labels += [classes[classes.index(name) - 1]] * len(files)",
      "tests/test_predict.py -k folder_runs_confusion"),
    m("a forecast's target is the last row of its window", "rnn_scripts/data/series.py",
      "series[starts + window + horizon - 1, self.target]",
      "series[starts + window - 1, self.target]",
      "tests/test_data.py -k timeseries_windows"),
    m("a series' test windows reach back into the training rows", OWN,
      '("test", test_path, slice(rest, total))',
      '("test", test_path, slice(rest - window, total))',
      "tests/test_series.py -k never_share"),
    m("--ignore-columns is ignored", "rnn_scripts/data/tables.py",
      "for c in chosen if c not in layout.ignore]", "for c in chosen]",
      "tests/test_data.py -k feature_columns"),
    m("--feature-columns is ignored", "rnn_scripts/data/tables.py",
      "chosen = layout.features or [", "chosen = [",
      "tests/test_data.py -k feature_columns"),
    m("a series' --ignore-columns is ignored", "rnn_scripts/data/series.py",
      "self.names = [c for c in named if c not in layout.ignore]",
      "self.names = list(named)",
      "tests/test_series.py -k chosen_columns"),
    m("features are standardised with the test rows", K,
      "        x = data.train.x\n        spec = standardisation",
      "        x = data.test.x\n        spec = standardisation",
      "tests/test_data.py -k standardized"),
    m("a regression's targets keep their mean", "rnn_scripts/preprocess.py",
      'spec["target_mean"] = y.mean(axis=0).tolist()',
      'spec["target_mean"] = (0 * y.mean(axis=0)).tolist()',
      UNITS),
    m("a regression's targets keep their spread", "rnn_scripts/preprocess.py",
      'spec["target_std"] = np.where(std > 0, std, 1.0).tolist()',
      'spec["target_std"] = np.ones_like(std).tolist()',
      UNITS),
    m("an export does not standardise its raw input", K,
      '        return [keras.layers.Rescaling(scale, offset, name="standardise")]',
      "        return []",
      "tests/test_export.py -k takes_raw_values"),
    m("a resume fits the preprocessing again", "rnn_scripts/stages.py",
      "if (run_dir.path / SPEC_FILE).is_file() and run_dir.has_unfinished_run():",
      "if False:",
      "tests/test_resume.py -k saved_preprocessing"),
    # Training and resume
    m("the batch order ignores the seed", F,
      "np.random.default_rng([seed, epoch]).permutation(count)",
      "np.random.default_rng([epoch]).permutation(count)",
      "tests/test_resume.py -k another_seed"),
    m("the batch order ignores the epoch", F,
      "np.random.default_rng([seed, epoch]).permutation(count)",
      "np.random.default_rng([seed]).permutation(count)",
      "tests/test_resume.py -k another_seed"),
    m("JAX and torch train the same batch order every epoch", F,
      "        self.rows = list(batch_rows(self.order.rows(), *self.split))",
      "        self.rows = getattr(self, 'rows', None) or list(\n"
      "            batch_rows(self.order.rows(), *self.split)\n        )",
      "tests/test_data.py -k feed_jax_and_torch"),
    m("a batch loses its last row", F,
      "        rows = order[start : start + batch_size]",
      "        rows = order[start : start + batch_size - 1]",
      "tests/test_data.py -k feed_jax_and_torch"),
    m("the batch order follows the passes over the data, not fit's epoch", F,
      "        self.order.epoch = epoch", "        pass",
      "tests/test_data.py tests/test_distribute.py -k 'own_order or one_device'"),
    m("changed data are not noticed on resume", RESUME,
      'meta.get("fingerprint") != run.fingerprint',
      'meta.get("fingerprint") != meta.get("fingerprint")',
      "tests/test_resume.py -k changed_data"),
    m("a changed model resumes another model's run", RESUME,
      'if meta.get("architecture") not in (None, run.architecture):', "if False:",
      "tests/test_resume.py -k belongs_to_its_script"),
    m("the optimizer state is not restored", RESUME,
      "        variable.assign(value)\n", "        pass\n",
      "tests/test_resume.py -k sigkill_after_epoch_1"),
    m("a tie counts as a better epoch", T, "score > progress.best",
      "score >= progress.best", "tests/test_schedules.py -k a_tie"),
    m("early stopping waits one epoch more", T,
      "epoch + 1 - progress.best_epoch >= patience",
      "epoch + 1 - progress.best_epoch > patience",
      "tests/test_schedules.py -k early_stopping_stops"),
    m("the plateau counters are not restored", T,
      "                setattr(self.plateau, name, value)", "                pass",
      "tests/test_schedules.py -k plateau_and_early_stopping_resume"),
    m("the plateau waits 3 epochs", T, '"patience": 2,', '"patience": 3,',
      "tests/test_schedules.py -k plateau_halves"),
    m("only a NaN loss stops training", T, "if not math.isfinite(loss):",
      "if math.isnan(loss):", "tests/test_resume.py -k infinite_loss"),
    m("a NaN validation loss is kept as a good epoch", T,
      'if not math.isfinite(row.get("val_loss", 0.0)):', "if False:",
      "tests/test_resume.py -k diverging_run"),
    m("signals are checked only between epochs", T,
      "    def on_train_batch_end(self, batch, logs=None):\n"
      "        self.run.check_signals()\n",
      "    def on_train_batch_end(self, batch, logs=None):\n",
      "tests/test_resume.py -k mid_epoch"),
    m("the best epoch has the highest loss", T,
      "    return value if higher_is_better(monitor) else -value",
      "    return value",
      "tests/test_template.py -k regression_trains"),
    m("a regression's best epoch is picked by accuracy", T,
      '    return "val_loss" if regression else "val_accuracy"',
      '    return "val_accuracy"',
      "tests/test_template.py -k regression_trains"),
    m("--monitor is ignored", T,
      '    if config.monitor != "auto":\n        return config.monitor\n', "",
      "tests/test_schedules.py -k monitored_figure"),
    m("one logit's accuracy is counted at probability 0.5", T,
      'threshold = 0.0 if output == "logits" else 0.5', "threshold = 0.5",
      "tests/test_predict.py -k one_output_accuracy"),
    m("a softmax output is trained as logits", T,
      '    if activation in (None, "linear"):\n        return "logits"',
      '    if True:\n        return "logits"',
      "tests/test_models.py -k read_as_logits"),
    m("a regression's output is left standardised", T,
      '    if output == "values":\n        layer', "    if False:\n        layer",
      "tests/test_models.py -k targets_units"),
    m("the progress bar counts past the epoch", T,
      "batch if steps is None else min(batch, steps - 1)", "batch",
      "tests/test_scripts.py -k progress_bar"),
    # The command line, the contract and run()
    m("any argument may change on resume", RESUME,
      "            elif name in CHANGEABLE_ON_RESUME:", "            elif True:",
      "tests/test_cli.py tests/test_resume.py -k 'settle or other_arguments'"),
    m("--tensorboard may not change on resume", RESUME,
      '    "tensorboard",\n', "",
      "tests/test_resume.py -k every_flag_that_may_change"),
    m("a resumed run takes the environment's backend", RESUME,
      '.get("backend", backend)', "and backend",
      "tests/test_resume.py -k keeps_its_backend_on"),
    m("a model parameter without a default is filled with nothing",
      "rnn_scripts/contract.py",
      "        elif parameter.default is parameter.empty:", "        elif False:",
      "tests/test_cli.py -k outside_the_contract"),
    m("a bool default makes a text flag", "rnn_scripts/cli.py",
      '        if flag.type == "bool" and not flag.many:', "        if False:",
      "tests/test_cli.py -k every_keyword_with_a_default"),
    m("a signal while Keras loads says nothing", "rnn_scripts/errors.py",
      "            os.write(Interrupts.stderr, message.encode())", "            pass",
      "tests/test_resume.py -k keras_loads"),
    m("run() leaves its signal handlers behind", "rnn_scripts/errors.py",
      "                signal.signal(signum, handler)", "                pass",
      "tests/test_rundir.py -k puts_back"),
    m("run() leaves the speed-ups installed", "rnn_scripts/stages.py",
      "        speedups.uninstall()\n", "",
      "tests/test_rundir.py -k puts_back"),
    m("a renamed build_model is not the script", "rnn_scripts/pipeline.py",
      'return getattr(build_model, "__module__", None) == "__main__" and',
      "return False and",
      "tests/test_scripts.py -k own_name"),
    m("a smoke run without --output-dir writes into runs/", "rnn_scripts/pipeline.py",
      "        elif config.smoke:  # a check", "        elif False:  # a check",
      "tests/test_scripts.py -k without_output_dir"),
    m("processes started with other arguments train anyway", "rnn_scripts/cluster.py",
      "        if len(set(everyone[:, column].tolist())) > 1:", "        if False:",
      "tests/test_multiworker.py -k different_arguments"),
    # predict.py and the served model
    m("predict.py swaps a one-logit run's two classes", S,
      "[layers.Rescaling(-1.0, 1.0)(y), y]", "[y, layers.Rescaling(-1.0, 1.0)(y)]",
      "tests/test_predict.py -k one_logit"),
    m("--model best reads model.keras", S,
      '("best.keras" if model == "best" else "model.keras")', '"model.keras"',
      "tests/test_predict.py -k model_best"),
    m("a run whose preprocessing names other outputs is served", S,
      "    if not fits:\n", "    if False:\n",
      "tests/test_predict.py -k edited"),
    m("an .npz's x_test is read before its x", K,
      'x = arrays.get("x", arrays.get("x_test"))',
      'x = arrays.get("x_test", arrays.get("x"))',
      "tests/test_predict.py -k reads_batches"),
    m("a PNG's transparency is dropped", K,
      "            image = image[..., :-1] * alpha + (1 - alpha)",
      "            image = image[..., :-1]",
      "tests/test_predict.py -k alpha_compositing"),
    m("word ids up to three past the vocabulary are accepted", K,
      '        top = self.spec["vocab_size"] - 1\n',
      '        top = self.spec["vocab_size"] + 2\n',
      "tests/test_predict.py -k word_ids_of_an_imdb_run"),
    m("raw words beyond the vocabulary keep their ids", K,
      'i if i < self.spec["vocab_size"] else OOV_TOKEN for i in ids', "i for i in ids",
      "tests/test_predict.py -k rare_words"),
    m("a huge PNG is decoded", K, "    if width * height > MAX_IMAGE_PIXELS:",
      "    if False:", "tests/test_predict.py -k cannot_handle"),
    # The speed-ups
    m("the split GRU cell slices again", GRU_SPLIT,
      "recurrent_z, recurrent_r, recurrent_h = ops.split(inner, 3, axis=-1)",
      "recurrent_z, recurrent_r, recurrent_h = inner[:, :self.units], inner[:, "
      "self.units:-self.units], inner[:, -self.units:]",
      "tests/test_gru_split.py -k slice_gradients"),
    m("the split GRU cell ignores dropout in training", GRU_SPLIT,
      "inputs = inputs * self.get_dropout_mask(inputs)", "inputs = inputs",
      "tests/test_gru_split.py -k to_the_bit"),
    m("the split GRU cell applies dropout at inference", GRU_SPLIT,
      "if training and 0.0 < self.dropout < 1.0:", "if 0.0 < self.dropout < 1.0:",
      "tests/test_gru_split.py -k at_inference"),
    m("a speed-up outside its tested versions is installed", SPEEDUPS,
      "        if found is None or not version(lowest) <= version(found)",
      "        if False and not version(lowest) <= version(found)",
      "tests/test_speedups.py -k 'not_tested_with or tested_range'"),
    m("a failed self-check keeps the speed-up", SPEEDUPS,
      "    if problem is not None:\n        module.uninstall()",
      "    if False:\n        module.uninstall()",
      "tests/test_speedups.py -k self_check_that_fails"),
    m("--fused-kernels off installs them anyway", SPEEDUPS,
      '    if config.fused_kernels == "off":\n        return {}',
      "    if False:\n        return {}",
      "tests/test_speedups.py -k fused_kernels_off_leaves"),
    m("the torch adapter runs SimpleRNN dropout on the fused kernel",
      "rnn_scripts/speedups/torch_fused.py",
      "            or (training and (cell.dropout or cell.recurrent_dropout))\n", "",
      "tests/test_torch_fused.py -k simplernn_dropout"),
]  # fmt: skip


def copy_project(folder):
    return shutil.copytree(
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
    options = "-q -p no:warnings -p no:cacheprovider" + (" -x" if stop_early else "")
    command = f"{sys.executable} -m pytest {options} {tests}"
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
    parser.add_argument("--jobs", type=int, default=1, help="mutants tested at a time")
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
                    f"the tool is out of date: {mutant.what!r}: its text is not found "
                    f"once in {mutant.file}"
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
        copies = queue.Queue()
        copies.put(folder)
        for job in range(1, args.jobs):
            copies.put(copy_project(Path(temporary) / f"project-{job}"))

        def on_a_free_copy(number, mutant):
            copy = copies.get()
            try:
                return check(number, mutant, copy)
            finally:
                copies.put(copy)

        survivors = []
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = [pool.submit(on_a_free_copy, n, m) for n, m in chosen]
            for future in as_completed(futures):
                line, mutant = future.result()
                print(line, flush=True)
                if mutant is not None:
                    survivors.append(mutant)
    minutes = (time.perf_counter() - started) / 60
    print(
        f"{len(chosen) - len(survivors)} of {len(chosen)} mutants killed in "
        f"{minutes:.0f} minutes"
    )
    return 1 if survivors else 0


def check(number, mutant, folder):
    """(the verdict's line, the mutant if it was not killed)."""
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
    line = f"{number:2} {verdict:8} {mutant.what}  [{mutant.tests}]"
    return line, (None if verdict == "killed" else mutant)


if __name__ == "__main__":
    sys.exit(main())
