"""Your own data and the trained model in use: the README's template walk-through step by
step, predict.py on images, arrays and texts, models that load on every backend, and
every input predict.py cannot handle (one line)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from files import separable_sequences, sentences
from helpers import ROOT, explain, importable, read_metrics, run_script, script_env
from test_scripts import copy_project

BACKENDS = [b for b in ("jax", "torch") if importable(b)]


def predict(run_dir, *inputs, cwd=None, env=None, stdin=None, folder=ROOT):
    """predict.py from `folder` (the repository, or a copy of the project)."""
    command = [sys.executable, str(folder / "predict.py"), str(run_dir), *map(str, inputs)]
    return subprocess.run(command, cwd=cwd or run_dir.parent, env=script_env(env), input=stdin,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def predicted_classes(result):
    assert result.returncode == 0, explain(result)
    return [line.rsplit(": ", 1)[1].split(" (")[0] for line in result.stdout.splitlines()]


# The README's walk-through, command by command (in a copy of the project).
WALK_THROUGH = [
    "python tools/make_example_data.py",
    "cp train_lstm.py train_my_model.py",
    "python train_my_model.py --data my_sequences.npz --epochs 4 --units 16 --output-dir runs/my-model",
    "python predict.py runs/my-model new_sequences.npy",
    "cp train_imdb_bilstm.py train_my_texts.py",
    "python train_my_texts.py --data my_sentences.csv --epochs 4 --units 8 --max-length 16 --output-dir runs/my-texts",
    'python predict.py runs/my-texts "My puppy can fetch and bark" "Gills and fins"',
]


def test_the_readme_shows_the_walk_through_that_this_file_follows():
    readme = (ROOT / "README.md").read_text()
    for command in WALK_THROUGH:
        assert f"$ {command}\n" in readme, command


@pytest.fixture(scope="module")
def walk_through(tmp_path_factory):
    """Each command of WALK_THROUGH in a copied project; {command: CompletedProcess}."""
    import shlex
    import shutil

    project = copy_project(tmp_path_factory.mktemp("walk-through"))
    (project / "tools").mkdir()
    shutil.copy(ROOT / "tools" / "make_example_data.py", project / "tools")
    done = {}
    for command in WALK_THROUGH:
        program, *args = shlex.split(command)
        if program == "cp":
            shutil.copy(project / args[0], project / args[1])
            continue
        result = subprocess.run([sys.executable, *args], cwd=project, env=script_env(),
                                capture_output=True, text=True, timeout=600)  # fmt: skip
        assert result.returncode == 0, f"{command}\n{explain(result)}"
        done[command] = result
    return project, done


@pytest.fixture(scope="module")
def project(walk_through):
    return walk_through[0]


@pytest.fixture(scope="module")
def sequence_run(project):
    return project / "runs" / "my-model"


@pytest.fixture(scope="module")
def text_run(project):
    return project / "runs" / "my-texts"


def test_walk_through_predicts_the_new_sequences_classes(walk_through):
    from files import separable_sequences

    _, done = walk_through
    expected = separable_sequences(8, seed=7)[1]
    assert done[WALK_THROUGH[0]].stdout.split("classes are ")[1].split() == [str(c) for c in expected]
    found = predicted_classes(done[WALK_THROUGH[3]])
    assert np.mean(np.array(found, dtype=int) == expected) >= 7 / 8
    assert predicted_classes(done[WALK_THROUGH[6]]) == ["dogs", "fish"]


def test_walk_through_a_copied_script_learns_your_sequences(sequence_run):
    metrics = read_metrics(sequence_run)
    assert metrics["test_accuracy"] > 0.9 and metrics["parameters"] == 4 * 16 * (3 + 16 + 1) + 4 * 16 * (16 + 16 + 1) + 17 * 4
    assert metrics["dataset"]["kind"] == "sequences" and metrics["dataset"]["classes"] == ["0", "1", "2", "3"]
    assert not (sequence_run / "samples.png").exists()  # sequences, not images


def test_predict_reads_batches_and_single_examples(sequence_run, project):
    x, y = separable_sequences(40, seed=9)  # examples the run never saw
    np.save(project / "new.npy", x)
    found = predicted_classes(predict(sequence_run, "new.npy", cwd=project, folder=project))
    assert np.mean(np.array(found, dtype=int) == y) > 0.9
    single = predicted_classes(predict(sequence_run, project / "new.npy", cwd=project, folder=project))[0]
    np.save(project / "one.npy", x[0])  # one example: (steps, features)
    assert predicted_classes(predict(sequence_run, "one.npy", cwd=project, folder=project)) == [single]


def test_the_readmes_python_snippet_predicts_what_predict_py_does(sequence_run, project):
    readme = (ROOT / "README.md").read_text()
    snippet = readme.split("```python\n", 1)[1].split("```", 1)[0]
    assert 'Path("runs/train_lstm-' in snippet and 'np.load("new.npy")' in snippet
    x, _ = separable_sequences(12, seed=13)
    np.save(project / "new.npy", x)
    snippet = snippet.replace('Path("runs/train_lstm-20261130-101500")', 'Path("runs/my-model")')
    result = subprocess.run([sys.executable, "-c", snippet], cwd=project, env=script_env(),
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, explain(result)
    printed = result.stdout.strip().splitlines()[-1].strip("[]").split()
    assert printed == predicted_classes(predict(sequence_run, "new.npy", cwd=project, folder=project))


def test_walk_through_a_copied_text_script_learns_and_predicts_sentences(text_run, project):
    assert read_metrics(text_run)["test_accuracy"] > 0.9
    vocabulary = json.loads((text_run / "vocabulary.json").read_text())
    assert vocabulary[:2] == ["", "[UNK]"] and "purr" in vocabulary
    texts, labels = sentences(30, seed=11)
    (project / "new.txt").write_text("\n".join(texts[10:]) + "\n")
    result = predict(text_run, *texts[:10], "new.txt", "-", cwd=project, stdin="My puppy can fetch and bark\n", folder=project)
    found = predicted_classes(result)
    assert len(found) == 31 and np.mean(np.array(found[:30]) == np.array(labels)) > 0.9
    assert found[-1] == "dogs" and result.stdout.splitlines()[-1].startswith("stdin:1: dogs (")


def test_json_lines_carry_every_class_probability(text_run, project):
    result = predict(text_run, "a kitten with whiskers", "--json", cwd=project)
    assert result.returncode == 0, explain(result)
    row = json.loads(result.stdout)
    assert row["class"] == "cats" and row["class_id"] == 0
    assert sum(row["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    assert row["probability"] == max(row["probabilities"].values())


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("images") / "run"
    result = run_script(
        "train_gru.py", "--synthetic", "--limit", "1800", "--epochs", "3", "--units", "16",
        "--learning-rate", "0.01", "--output-dir", out,
    )  # fmt: skip
    assert result.returncode == 0, explain(result)
    return out


def synthetic_test_images(count=12):
    from rnn_scripts.data import synthetic_images

    return synthetic_images(count, np.random.default_rng(99))


def test_png_images_of_any_size_and_polarity_read_as_the_training_images(image_run, tmp_path):
    import matplotlib.pyplot as plt

    assert read_metrics(image_run)["test_accuracy"] > 0.9
    images, labels = synthetic_test_images()
    names = []
    for i, image in enumerate(images):
        big = np.kron(image, np.ones((5, 4), np.uint8))  # 140 x 112 pixels
        if i % 2:
            big = 255 - big  # dark rows on a light page: turned light on dark
        plt.imsave(tmp_path / f"{i}.png", big, cmap="gray", vmin=0, vmax=255)
        names.append(f"{i}.png")
    np.save(tmp_path / "raw.npy", images)
    from_png = predicted_classes(predict(image_run, *names, cwd=tmp_path))
    from_array = predicted_classes(predict(image_run, "raw.npy", cwd=tmp_path))
    assert from_png == from_array and np.mean(np.array(from_png, dtype=int) == labels) > 0.9


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_tensorflow_trained_model_loads_and_predicts_the_same_on(backend, image_run, tmp_path):
    images, _ = synthetic_test_images()
    np.save(tmp_path / "raw.npy", images)
    mine = predict(image_run, "raw.npy", "--json", cwd=tmp_path)
    theirs = predict(image_run, "raw.npy", "--json", "--backend", backend, cwd=tmp_path)
    assert theirs.returncode == 0, explain(theirs)
    for a, b in zip(mine.stdout.splitlines(), theirs.stdout.splitlines()):
        a, b = json.loads(a), json.loads(b)
        assert a["class"] == b["class"] and a["probability"] == pytest.approx(b["probability"], abs=1e-4)
    program = "import keras, sys; m = keras.saving.load_model(sys.argv[1]); print(m.steps_per_execution)"
    for name in ("model.keras", "best.keras"):  # a plain load_model, no compile=False
        done = subprocess.run([sys.executable, "-c", program, str(image_run / name)], env=script_env({"KERAS_BACKEND": backend}), capture_output=True, text=True)
        assert done.returncode == 0 and done.stdout.strip().endswith("1"), done.stderr[-1500:]


def test_word_ids_of_an_imdb_run_and_raw_text_with_its_word_index(tmp_path):
    out = tmp_path / "run"
    result = run_script("train_imdb_bilstm.py", "--synthetic", "--smoke", "--units", "4", "--vocab-size", "500", "--output-dir", out)
    assert result.returncode == 0, explain(result)
    np.save(tmp_path / "ids.npy", np.array([[1, 5, 6, 7], [1, 60, 61, 0]]))
    assert len(predicted_classes(predict(out, "ids.npy", cwd=tmp_path))) == 2
    refused = predict(out, "what a film", cwd=tmp_path)
    assert refused.returncode == 1 and "this run reads tokens from files" in refused.stderr, explain(refused)
    spec = json.loads((out / "preprocessing.json").read_text())
    (out / "preprocessing.json").write_text(json.dumps({**spec, "imdb_words": True}))  # as a real IMDB run
    offline = predict(out, "what a film", cwd=tmp_path, env={"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"})
    assert offline.returncode == 1 and offline.stderr.count("\n") == 1, explain(offline)
    assert "imdb_word_index.json" in offline.stderr and "--word-index" in offline.stderr
    (tmp_path / "index.json").write_text(json.dumps({"what": 2, "a": 0, "film": 14}))
    with_index = predict(out, "What a film!", "--word-index", "index.json", "--json", cwd=tmp_path)
    assert json.loads(with_index.stdout)["class"] in ("negative", "positive"), explain(with_index)


def test_raw_text_becomes_the_imdb_datasets_word_ids():
    from rnn_scripts.preprocess import Preprocessing

    words = Preprocessing({"kind": "tokens"}, word_index={"the": 1, "film": 19, "don't": 88})
    assert words.encode_words("The film<br />, don't... unknownword!") == [1, 4, 22, 91, 2]


@pytest.mark.parametrize(
    "setup, inputs, words",
    [
        ("none", ["x.png"], "no readable preprocessing.json"),
        ("unfinished", ["x.npy"], "has the run finished? --model best"),
        ("run", ["missing.png"], "missing.png: file not found"),
        ("run", ["notes.txt"], "expected a .png, .npy or .npz file"),
        ("run", ["bad.png"], "not a readable PNG image"),
        ("run", ["wrong.npy"], "expected images of (28, 28), got (5, 5)"),
        ("run", ["strings.npy"], "expected pixels (rows, columns)"),
        ("run", ["pickle.npy"], "not a readable .npy of plain numbers"),
        ("broken", ["x.npy"], "cannot load this .keras file"),
    ],
)
def test_what_predict_cannot_handle_is_one_line(image_run, tmp_path, setup, inputs, words):
    import shutil

    run = tmp_path / "run"
    if setup != "none":
        shutil.copytree(image_run, run)
    if setup == "unfinished":
        (run / "model.keras").unlink()
    if setup == "broken":
        (run / "model.keras").write_bytes(b"PK\x03\x04 not a model")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    np.save(tmp_path / "wrong.npy", np.zeros((5, 5)))
    np.save(tmp_path / "x.npy", np.zeros((28, 28)))
    np.save(tmp_path / "strings.npy", np.array(["a", "b"]))
    np.save(tmp_path / "pickle.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    result = predict(run, *inputs, cwd=tmp_path)
    assert result.returncode == 1, explain(result)
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert words in result.stderr, result.stderr


def test_bad_predict_arguments_exit_2(image_run, tmp_path):
    result = predict(image_run, cwd=tmp_path)  # no input
    assert result.returncode == 2 and result.stderr.count("\n") == 1, explain(result)
