"""predict.py with finished runs: images, arrays, texts and labelled files; the Python API
the README shows; every input it cannot handle (one line, answered before Keras loads
where it can be). Models that load on every backend: test_backends.py.

predict.py runs in this test process (helpers.predict_here: its main() with its command
line) on the finished runs conftest.py trains once; what is about a process (no backend
importable, a closed stdin, a reader that stops early) runs as one.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from files import sentences, separable_sequences
from helpers import (
    ROOT,
    explain,
    predict_here,
    script_env,
    standardised,
    without_backends,
)


def predict(run_dir, *inputs, cwd=None, env=None, stdin=None):
    """predict.py as a process of its own."""
    command = [sys.executable, str(ROOT / "predict.py"), str(run_dir), *map(str, inputs)]
    return subprocess.run(
        command,
        cwd=cwd or run_dir.parent,
        env=script_env(env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


def predicted_classes(result):
    assert result.returncode == 0, explain(result)
    return [
        line.rsplit(": ", 1)[1].split(" (")[0] for line in result.stdout.splitlines()
    ]


def json_rows(result):
    assert result.returncode == 0, explain(result)
    return [json.loads(line) for line in result.stdout.splitlines()]


# --------------------------------------------------------------------------------------
# Arrays, texts, images
# --------------------------------------------------------------------------------------
@pytest.mark.smoke
def test_predict_reads_batches_single_examples_and_npz_files(finished, tmp_path):
    run = finished("sequences")
    x, y = separable_sequences(40, seed=9)  # examples the run never saw
    np.save(tmp_path / "new.npy", x)
    found = predicted_classes(predict_here(run, "new.npy", cwd=tmp_path))
    assert np.mean(np.array(found, dtype=int) == y) > 0.9
    np.save(tmp_path / "one.npy", x[0])  # one example: (steps, features)
    assert predicted_classes(predict_here(run, "one.npy", cwd=tmp_path)) == found[:1]
    np.savez(tmp_path / "x.npz", x=x[:5], y=y[:5])
    # x first, x_test without x
    np.savez(tmp_path / "decoy.npz", x=x[5:10], x_test=x[:5])
    both = predict_here(run, "x.npz", "decoy.npz", cwd=tmp_path)
    assert predicted_classes(both) == found[:10]


def test_best_keras_is_read_with_model_best(finished, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished("sequences"), run)
    x, _ = separable_sequences(4, seed=9)
    np.save(tmp_path / "x.npy", x)
    final = json_rows(predict_here(run, "x.npy", "--json", cwd=tmp_path))
    shutil.copy(run / "model.keras", run / "best.keras")  # best now differs from final
    best = json_rows(
        predict_here(run, "x.npy", "--json", "--model", "best", cwd=tmp_path)
    )
    assert best == final
    (run / "best.keras").unlink()
    assert predict_here(run, "x.npy", cwd=tmp_path).returncode == 0
    missing = predict_here(run, "x.npy", "--model", "best", cwd=tmp_path)
    assert missing.returncode == 1 and "best.keras: not found" in missing.stderr


def test_two_classes_from_one_logit_are_the_models_own_sigmoid(finished, tmp_path):
    import keras

    run = finished("two classes")
    x, y = separable_sequences(400, classes=2, seed=3)
    x, y = x[320:], y[320:]  # the run's test examples
    np.save(tmp_path / "x.npy", x)
    rows = json_rows(predict_here(run, "x.npy", "--json", cwd=tmp_path))
    model = keras.saving.load_model(run / "model.keras")
    logits = model.predict(standardised(run, x), verbose=0)[:, 0]
    yes = 1 / (1 + np.exp(-logits))
    np.testing.assert_allclose([r["probabilities"]["yes"] for r in rows], yes, atol=1e-5)
    np.testing.assert_allclose(
        [r["probabilities"]["no"] for r in rows], 1 - yes, atol=1e-5
    )
    assert [r["class"] for r in rows] == ["yes" if p > 0.5 else "no" for p in yes]
    assert np.mean(np.array([r["class_id"] for r in rows]) == y) > 0.9


def test_text_runs_read_sentences_text_files_and_stdin_with_true_line_numbers(
    finished, tmp_path
):
    texts, labels = sentences(30, seed=11)
    (tmp_path / "new.txt").write_text("\n".join(texts[10:]) + "\n")
    stdin = "\n\nMy puppy can fetch and bark\n"
    result = predict_here(
        finished("texts"), *texts[:10], "new.txt", "-", cwd=tmp_path, stdin=stdin
    )
    found = predicted_classes(result)
    assert len(found) == 31 and np.mean(np.array(found[:30]) == np.array(labels)) > 0.9
    assert found[-1] == "dogs"
    assert result.stdout.splitlines()[-1].startswith("stdin:3: dogs (")


def test_json_lines_carry_every_class_probability_under_its_name(finished, tmp_path):
    """Each sentence names one class by its own words: the probability under that class's
    name is the largest, and the columns add up to one."""
    run = finished("texts")
    said = {
        "cats": "a kitten with whiskers",
        "dogs": "puppy fetch",
        "fish": "gills and fins",
    }
    rows = json_rows(predict_here(run, "--json", "--text", *said.values(), cwd=tmp_path))
    for row, name in zip(rows, said):
        assert set(row["probabilities"]) == {"cats", "dogs", "fish"}
        assert max(row["probabilities"], key=row["probabilities"].get) == name
        assert row["class"] == name and row["class_id"] == [
            "cats",
            "dogs",
            "fish",
        ].index(name)
        assert sum(row["probabilities"].values()) == pytest.approx(1, abs=1e-5)
        assert row["probability"] == row["probabilities"][name]


def test_a_word_that_names_a_file_is_read_as_a_file_with_a_warning_unless_text(
    finished, tmp_path
):
    run = finished("texts")
    (tmp_path / "bark").write_text("purr whiskers kitten\n")
    as_file = predict_here(run, "bark", cwd=tmp_path)
    assert (
        predicted_classes(as_file) == ["cats"]
        and "'bark' is a file here" in as_file.stderr
    )
    as_text = predict_here(run, "--text", "bark", "-", cwd=tmp_path)  # "-" too is text
    found = predicted_classes(as_text)
    assert found[0] == "dogs" and len(found) == 2 and as_text.stderr == ""


def test_a_sentence_longer_than_a_file_name_is_text_and_an_empty_argument_is_skipped(
    finished, tmp_path
):
    run = finished("texts")
    long = "my puppy loves to fetch and bark at the kennel " * 12  # 576 bytes
    assert predicted_classes(predict_here(run, long, cwd=tmp_path)) == ["dogs"]
    result = predict_here(run, "", "gills and fins", cwd=tmp_path)
    assert (
        predicted_classes(result) == ["fish"]
        and "empty argument was skipped" in result.stderr
    )


def test_png_images_of_any_size_polarity_and_transparency_read_as_the_training_images(
    finished, tmp_path
):
    import matplotlib.pyplot as plt

    from helpers import read_metrics
    from rnn_scripts.data.official import synthetic_images

    run = finished("images")
    assert read_metrics(run)["test_accuracy"] > 0.9
    images, labels = synthetic_images(12, np.random.default_rng(99))
    names = []
    for i, image in enumerate(images):
        big = np.kron(image, np.ones((5, 4), np.uint8))  # 140 x 112 pixels
        if i % 3 == 1:
            big = 255 - big  # dark rows on a light page: turned light on dark
        if (
            i % 3 == 2
        ):  # a transparent background: the rows opaque, the page shows through
            rgba = np.zeros((*big.shape, 4))
            rgba[..., 3] = big / 255.0  # black ink whose opacity draws the rows
            plt.imsave(tmp_path / f"{i}.png", rgba)
        else:
            plt.imsave(tmp_path / f"{i}.png", big, cmap="gray", vmin=0, vmax=255)
        names.append(f"{i}.png")
    np.save(tmp_path / "raw.npy", images)
    from_png = predicted_classes(predict_here(run, *names, cwd=tmp_path))
    from_array = predicted_classes(predict_here(run, "raw.npy", cwd=tmp_path))
    assert (
        from_png == from_array and np.mean(np.array(from_png, dtype=int) == labels) > 0.9
    )


def test_alpha_compositing_puts_a_transparent_page_behind_the_ink(tmp_path):
    import matplotlib.pyplot as plt

    from rnn_scripts.kinds import read_image

    rgba = np.zeros((28, 28, 4))
    rgba[10:12, :, 3] = 1.0  # opaque black rows; the rest transparent
    plt.imsave(tmp_path / "a.png", rgba)
    image = read_image(tmp_path / "a.png", {"shape": [28, 28], "background": "dark"})
    # white rows on black, as MNIST
    assert image[10:12].max() > 250 and image[:10].max() < 5


def test_word_ids_of_an_imdb_run_and_raw_text_with_its_word_index(finished, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished("word ids"), out)
    np.save(tmp_path / "ids.npy", np.array([[1, 5, 6, 7], [1, 60, 61, 0]]))
    assert len(predicted_classes(predict_here(out, "ids.npy", cwd=tmp_path))) == 2
    # ids stay below vocab_size
    np.save(tmp_path / "too_big.npy", np.array([[1, 5, 500]]))
    too_big = predict_here(out, "too_big.npy", cwd=tmp_path)
    # named with the file, before Keras loads (the Python API checks the ids again)
    words = "too_big.npy: word ids must lie in 0..499"
    assert too_big.returncode == 1 and words in too_big.stderr, explain(too_big)
    np.save(tmp_path / "top.npy", np.array([[1, 5, 499]]))
    assert predict_here(out, "top.npy", cwd=tmp_path).returncode == 0
    refused = predict_here(out, "what a film", cwd=tmp_path)
    assert refused.returncode == 1, explain(refused)
    assert "this run reads tokens from files" in refused.stderr
    spec = json.loads((out / "preprocessing.json").read_text())
    # IMDB's
    (out / "preprocessing.json").write_text(json.dumps({**spec, "imdb_words": True}))
    offline = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    no_index = predict(out, "what a film", cwd=tmp_path, env=offline)
    assert no_index.returncode == 1 and no_index.stderr.count("\n") == 1, explain(
        no_index
    )
    assert (
        "imdb_word_index.json" in no_index.stderr and "--word-index" in no_index.stderr
    )
    (tmp_path / "index.json").write_text(
        json.dumps({"what": 2, "a": 0, "film": 14, "rare": 900})
    )
    args = ["What a rare film!", "--word-index", "index.json", "--json"]
    with_index = predict_here(out, *args, cwd=tmp_path)
    assert json_rows(with_index)[0]["class"] in ("negative", "positive")


def test_raw_text_becomes_the_imdb_datasets_word_ids_and_rare_words_are_unknown():
    from rnn_scripts.kinds import WordIds

    index = {"the": 1, "film": 19, "don't": 88}
    words = WordIds({"vocab_size": 50}, word_index=index)
    assert words.encode_words("The film<br />, don't... unknownword!") == [
        1,
        4,
        22,
        2,
        2,
    ]


def test_a_run_written_word_index_is_used_for_raw_text(tmp_path):
    from rnn_scripts.preprocess import Preprocessing

    spec = {
        "kind": "tokens",
        "task": "classification",
        "class_names": ["a", "b"],
        "max_length": 5,
        "vocab_size": 30,
        "imdb_words": True,
        "output": "logits",
    }
    (tmp_path / "preprocessing.json").write_text(json.dumps(spec))
    (tmp_path / "word_index.json").write_text(json.dumps({"good": 7}))
    loaded = Preprocessing.load(tmp_path).kind
    assert loaded.word_index == {"good": 7} and loaded.encode_words("good") == [1, 10]


# --------------------------------------------------------------------------------------
# --labels: a labelled file, evaluated
# --------------------------------------------------------------------------------------
def test_a_labelled_file_gives_predictions_csv_and_the_runs_metrics(finished, tmp_path):
    import csv

    x, y = separable_sequences(50, seed=21)
    np.savez(tmp_path / "labelled.npz", x=x, y=y)
    args = ["labelled.npz", "--labels", "--output", tmp_path / "p.csv"]
    result = predict_here(finished("sequences"), *args, cwd=tmp_path)
    assert result.returncode == 0, explain(result)
    with open(tmp_path / "p.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 50 and list(rows[0]) == [
        "input",
        "prediction",
        "probability",
        "true",
    ]
    assert [r["true"] for r in rows] == [str(v) for v in y]
    accuracy = np.mean([r["prediction"] == r["true"] for r in rows])
    lines = result.stdout.splitlines()
    assert lines[0] == "test data: labelled.npz (x, y)"  # the pair of arrays read
    assert f"accuracy {accuracy:.4f}" in lines[1]
    per_class = [line for line in result.stdout.splitlines() if line.startswith("  ")]
    assert [line.split(":")[0].strip() for line in per_class] == ["0", "1", "2", "3"]


def test_a_labelled_text_csv_is_evaluated_with_its_class_names(finished, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished("texts"), run)
    texts, labels = sentences(40, seed=13)
    rows = "".join(f"{label},{text}\n" for text, label in zip(texts, labels))
    (tmp_path / "t.csv").write_text("label,text\n" + rows)
    result = predict_here(run, "t.csv", "--labels", cwd=tmp_path)
    assert result.returncode == 0, explain(result)
    assert (run / "predictions.csv").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "t.csv"]  # nothing here
    assert float(result.stdout.split()[1]) > 0.9
    (tmp_path / "birds.csv").write_text("label,text\nbirds,tweet tweet\n")
    unknown = predict_here(run, "birds.csv", "--labels", cwd=tmp_path)
    assert unknown.returncode == 1
    assert "'birds' is not one of the training classes" in unknown.stderr


# --------------------------------------------------------------------------------------
# What predict.py cannot handle: one line, mostly before Keras loads
# --------------------------------------------------------------------------------------
def tampered(spec):
    def edit(run):
        path = run / "preprocessing.json"
        path.write_text(json.dumps(spec(json.loads(path.read_text()))))

    return edit


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    import matplotlib.pyplot as plt

    folder = tmp_path_factory.mktemp("inputs")
    (folder / "notes.txt").write_text("hello")
    (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    plt.imsave(folder / "small.png", np.zeros((4, 4)))
    head = bytearray((folder / "small.png").read_bytes())
    head[16:24] = (30000).to_bytes(4, "big") * 2  # the IHDR chunk's width and height
    (folder / "huge.png").write_bytes(bytes(head))
    np.save(folder / "wrong.npy", np.zeros((5, 5)))
    np.save(folder / "x.npy", np.zeros((28, 28)))
    np.save(folder / "nan.npy", np.full((28, 28), np.nan))
    np.save(folder / "empty.npy", np.zeros((0, 28, 28)))
    np.save(folder / "strings.npy", np.array(["a", "b"]))
    np.save(folder / "pickle.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return folder


@pytest.mark.parametrize(
    "setup, inputs, words",
    [
        ("none", ["x.png"], "no run folder"),
        ("no spec", ["x.npy"], "no preprocessing.json"),
        ("unfinished", ["x.npy"], "has the run finished? --model best"),
        ("run", ["missing.png"], "missing.png: file not found"),
        ("run", ["notes.txt"], "expected a .png, .npy or .npz file"),
        ("run", ["bad.png"], "not a PNG image"),
        ("run", ["huge.png"], "30000x30000 pixels; at most"),
        (
            "run",
            ["wrong.npy"],
            "expected pixels (rows, columns) = (28, 28), or a batch of them, got float64 (1, 5, 5)",
        ),
        ("run", ["strings.npy"], "expected pixels (rows, columns)"),
        ("run", ["pickle.npy"], "an object array (a pickle)"),
        ("run", ["nan.npy"], "holds NaN or infinite values"),
        ("run", ["empty.npy"], "holds no examples"),
        ("run", ["-"], "this run reads images, not texts"),
        ("broken", ["x.npy"], "cannot load this .keras file"),
        ("kind", ["x.npy"], "no valid 'kind' and 'task'"),
        ("shape", ["x.npy"], "'shape' must be two sizes"),
        ("names", ["x.npy"], "'class_names' repeat"),
        ("list", ["x.npy"], "not a JSON object"),
        ("short scale", ["x.npy"], "'scale' must be numbers"),
    ],
)
def test_what_predict_cannot_handle_is_one_line(
    finished, bad_inputs, tmp_path, setup, inputs, words
):
    run = tmp_path / "run"
    if setup != "none":
        shutil.copytree(finished("images"), run)
    edits = {
        "no spec": lambda r: (r / "preprocessing.json").unlink(),
        "unfinished": lambda r: (r / "model.keras").unlink(),
        "broken": lambda r: (r / "model.keras").write_bytes(b"PK\x03\x04 not a model"),
        "kind": tampered(lambda s: {k: v for k, v in s.items() if k != "kind"}),
        "shape": tampered(lambda s: {**s, "shape": "28x28"}),
        "names": tampered(lambda s: {**s, "class_names": ["a"] * 10}),
        "list": lambda r: (r / "preprocessing.json").write_text("[1, 2]"),
        "short scale": tampered(lambda s: {**s, "scale": [1.0, 2.0]}),
    }
    if setup in edits:
        edits[setup](run)
    result = predict_here(run, *inputs, cwd=bad_inputs)
    assert result.returncode == 1, explain(result)
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert words in result.stderr, result.stderr


@pytest.mark.parametrize(
    "edit, words",
    [
        (
            lambda spec, vocabulary: ({**spec, "max_length": "../../etc"}, vocabulary),
            "'max_length' and 'vocab_size' must be positive integers",
        ),
        (
            lambda spec, vocabulary: ({**spec, "max_length": -5}, vocabulary),
            "'max_length' and 'vocab_size' must be positive integers",
        ),
        (
            lambda spec, vocabulary: (spec, {"purr": 3}),
            "vocabulary.json must be a list of words",
        ),
        (
            lambda spec, vocabulary: (
                {**spec, "class_names": ["cats", "dogs"]},
                vocabulary,
            ),
            "names 2 classes or targets, the model has 3 outputs",
        ),
        (
            lambda spec, vocabulary: ({**spec, "output": "probabilities"}, vocabulary),
            "preprocessing.json says the model gives probabilities, the model gives logits",
        ),
        (
            lambda spec, vocabulary: (
                {
                    **spec,
                    "kind": "images",
                    "shape": [100000, 100000],
                    "scale": 1.0,
                    "background": "dark",
                },
                vocabulary,
            ),
            "at most 16,777,216 pixels",
        ),
    ],
)
def test_an_edited_text_run_is_one_line(finished, tmp_path, edit, words):
    run = tmp_path / "run"
    shutil.copytree(finished("texts"), run)
    spec, vocabulary = edit(
        json.loads((run / "preprocessing.json").read_text()),
        json.loads((run / "vocabulary.json").read_text()),
    )
    (run / "preprocessing.json").write_text(json.dumps(spec))
    (run / "vocabulary.json").write_text(json.dumps(vocabulary))
    result = predict_here(run, "--text", "a kitten", cwd=tmp_path)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, explain(result)
    assert words in result.stderr


@pytest.mark.smoke
def test_input_errors_answer_before_keras_loads(finished, tmp_path):
    env = without_backends(tmp_path)
    run = finished("images")
    (tmp_path / "x.txt").write_text("x")
    for inputs, words in (
        (["missing.npy"], "file not found"),
        (["x.txt"], "expected a .png"),
    ):
        result = predict(run, *inputs, cwd=tmp_path, env=env)
        assert result.returncode == 1 and words in result.stderr, explain(result)
    result = predict(tmp_path / "nothing", "x.npy", cwd=tmp_path, env=env)
    assert result.returncode == 1 and "no run folder" in result.stderr
    result = predict(run, cwd=tmp_path, env=env)  # no input: an argument error
    assert result.returncode == 2 and result.stderr.count("\n") == 1, explain(result)


def test_stdin_closed_is_one_line(finished, tmp_path):
    run = finished("texts")
    command = [sys.executable, str(ROOT / "predict.py"), str(run), "-"]
    done = subprocess.run(
        command,
        cwd=tmp_path,
        env=script_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "no text to classify" in done.stderr, explain(done)
    closed = subprocess.run(
        f"{sys.executable} {ROOT / 'predict.py'} {run} - <&-",
        shell=True,
        cwd=tmp_path,
        env=script_env(),
        capture_output=True,
        text=True,
    )
    assert closed.returncode == 1 and closed.stderr.count("\n") == 1, explain(closed)
    assert "standard input" in closed.stderr


def test_predictions_piped_into_head_end_quietly(finished, tmp_path):
    x, _ = separable_sequences(3000, seed=1)
    np.save(tmp_path / "many.npy", x)
    done = subprocess.run(
        f"{sys.executable} {ROOT / 'predict.py'} {finished('sequences')} many.npy | head -1",
        shell=True,
        cwd=tmp_path,
        env=script_env(),
        capture_output=True,
        text=True,
    )
    assert done.stdout.count("\n") == 1 and "Traceback" not in done.stderr, explain(done)


def test_the_python_api_refuses_an_input_of_another_shape_in_one_line(finished):
    from rnn_scripts.errors import InputError
    from rnn_scripts.serving import TrainedRun

    run = TrainedRun(finished("images"))
    with pytest.raises(InputError) as refused:
        run.predict(np.zeros((1, 3000, 3000)))
    assert (
        str(refused.value)
        == "the input: expected pixels (rows, columns) = (28, 28), or a batch of them, got float32 (1, 3000, 3000)"
    )
    assert isinstance(refused.value, ValueError)  # what a caller of a predict() expects
    assert run.predict(np.zeros((28, 28))).labels[0] in [str(d) for d in range(10)]


def test_one_output_accuracy_is_the_accuracy_of_its_predictions(finished, tmp_path):
    """A one-logit model's accuracy counts a logit above 0 as the second class: the same
    as predictions.csv, whose probabilities are the sigmoid's. The model is barely
    trained, so that logits lie between 0 and 0.5, where 0.5 taken as a logit's threshold
    would count another class."""
    import csv

    from helpers import copy_script, read_metrics, run_here

    def near_zero(script):  # one logit, about 0.25 before training
        return script.replace(
            'Dense(outputs, dtype="float32")',
            'Dense(1, dtype="float32", bias_initializer=keras.initializers.Constant(0.25))',
        )

    script = copy_script("train_lstm.py", tmp_path, near_zero, "train_one_logit.py")
    folder, run = finished("two classes").parent, tmp_path / "run"
    args = ["--data", folder / "two.npz", "--epochs", "1", "--units", "8"]
    args += ["--num-layers", "1", "--learning-rate", "1e-5", "--output-dir", run]
    trained = run_here(script, *args, cwd=tmp_path)
    assert trained.returncode == 0, explain(trained)
    # its test split is the run's
    result = predict_here(run, folder / "two.npz", "--labels", cwd=tmp_path)
    assert result.returncode == 0, explain(result)
    with open(run / "predictions.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 80 and {r["prediction"] for r in rows} <= {"no", "yes"}
    yes = [float(r["probability"]) for r in rows if r["prediction"] == "yes"]
    assert any(0.5 < p < 1 / (1 + np.exp(-0.5)) for p in yes)  # logits in (0, 0.5)
    accuracy = np.mean([r["prediction"] == r["true"] for r in rows])
    assert accuracy == pytest.approx(read_metrics(run)["test_accuracy"], abs=1e-6)


def test_a_regression_is_evaluated_in_its_units(finished, tmp_path):
    import csv

    from files import write_regression
    from helpers import read_metrics

    run = tmp_path / "run"
    shutil.copytree(finished("regression"), run)
    write_regression(tmp_path / "values.npz")
    result = predict_here(run, "values.npz", "--labels", cwd=tmp_path)
    assert result.returncode == 0, explain(result)
    with open(run / "predictions.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    errors = [abs(float(r["predicted value"]) - float(r["true value"])) for r in rows]
    assert len(rows) == 100  # the file's test split (x_test, y_test)
    assert np.mean(errors) == pytest.approx(read_metrics(run)["test_mae"], rel=1e-3)
    # "mae X  rmse Y  r2 Z (N examples)"
    shown = float(result.stdout.splitlines()[1].split()[1])
    assert shown == pytest.approx(np.mean(errors), rel=1e-4)


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """Reviews in the raw IMDB archive's layout: train/ and test/, a folder per class."""
    from helpers import run_here

    folder = tmp_path_factory.mktemp("folders")
    texts, labels = sentences(240, seed=4)
    for i, (text, label) in enumerate(zip(texts, labels)):
        place = folder / "reviews" / ("test" if i % 4 == 0 else "train") / label
        place.mkdir(parents=True, exist_ok=True)
        (place / f"{i:04d}.txt").write_text(text)
    args = [
        "--data",
        folder / "reviews",
        "--epochs",
        "4",
        "--units",
        "8",
        "--max-length",
        "12",
    ]
    args += ["--learning-rate", "0.01"]
    result = run_here("train_imdb_bilstm.py", *args, "--output-dir", folder / "run")
    assert result.returncode == 0, explain(result)
    return folder / "run", folder / "reviews" / "test"


def test_a_folder_runs_confusion_matrix_is_its_test_files_by_their_folders(folder_run):
    from helpers import read_metrics
    from rnn_scripts.serving import TrainedRun

    run, test = folder_run
    names = read_metrics(run)["dataset"]["classes"]
    assert names == ["cats", "dogs", "fish"]
    counts = np.zeros((3, 3), int)
    trained = TrainedRun(run)
    for path in sorted(test.rglob("*.txt")):
        found = trained.predict(path.read_text()).class_ids[0]
        counts[names.index(path.parent.name), found] += 1
    np.testing.assert_array_equal(counts, read_metrics(run)["confusion_matrix"])


def test_a_text_folder_is_evaluated_file_by_file(folder_run, tmp_path):
    import csv

    run = tmp_path / "run"
    shutil.copytree(folder_run[0], run)
    result = predict_here(run, folder_run[1], "--labels", cwd=tmp_path)
    assert result.returncode == 0, explain(result)
    with open(run / "predictions.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 60 and all(
        r["true"] == Path(r["input"]).parent.name for r in rows
    )
    assert float(result.stdout.split()[1]) > 0.9


def test_the_python_api_reads_best_keras_with_model_best(finished, tmp_path):
    from rnn_scripts.serving import TrainedRun

    run = tmp_path / "run"
    shutil.copytree(finished("sequences"), run)
    x, _ = separable_sequences(5, seed=9)
    final = TrainedRun(run).predict(x).probabilities
    # another model
    shutil.copy(finished("two classes") / "model.keras", run / "best.keras")
    with pytest.raises(
        Exception, match="names 4 classes or targets, the model has 1 outputs"
    ):
        TrainedRun(run, model="best")
    shutil.copy(run / "model.keras", run / "best.keras")
    np.testing.assert_allclose(
        TrainedRun(run, model="best").predict(x).probabilities, final
    )
