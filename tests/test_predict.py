"""predict.py with finished runs: images, arrays, texts and labelled files; the Python API
the README shows; models that load on every backend; every input it cannot handle (one
line, answered before Keras loads where it can be).

Slow by design (every run of the suite ends with this file's seconds): it trains a finished
run of each kind (images, sequences, texts, two classes, a regression) and runs predict.py
on them as a user does, a subprocess per call, and loads models trained on each backend on
the others.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from files import (
    sentences,
    separable_sequences,
    write_sentences_csv,
    write_sequences_npz,
)
from helpers import (
    ROOT,
    explain,
    importable,
    read_metrics,
    run_script,
    script_env,
    without_backends,
)

BACKENDS = [b for b in ("jax", "torch") if importable(b)]


def predict(run_dir, *inputs, cwd=None, env=None, stdin=None, **options):
    command = [sys.executable, str(ROOT / "predict.py"), str(run_dir), *map(str, inputs)]
    return subprocess.run(command, cwd=cwd or run_dir.parent, env=script_env(env), input=stdin,
                          capture_output=True, text=True, timeout=300, **options)  # fmt: skip


def predicted_classes(result):
    assert result.returncode == 0, explain(result)
    return [
        line.rsplit(": ", 1)[1].split(" (")[0] for line in result.stdout.splitlines()
    ]


def json_rows(result):
    assert result.returncode == 0, explain(result)
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture(scope="module")
def sequence_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sequences")
    write_sequences_npz(folder / "my.npz")
    result = run_script(
        "train_lstm.py",
        "--data",
        folder / "my.npz",
        "--epochs",
        "4",
        "--units",
        "16",
        "--output-dir",
        folder / "run",
    )
    assert result.returncode == 0, explain(result)
    return folder / "run"


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("texts")
    write_sentences_csv(folder / "s.csv")
    result = run_script(
        "train_imdb_bilstm.py",
        "--data",
        folder / "s.csv",
        "--epochs",
        "4",
        "--units",
        "8",
        "--max-length",
        "16",
        "--output-dir",
        folder / "run",
    )
    assert result.returncode == 0, explain(result)
    return folder / "run"


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("images") / "run"
    result = run_script(
        "train_gru.py",
        "--synthetic",
        "--limit",
        "1800",
        "--epochs",
        "3",
        "--units",
        "16",
        "--learning-rate",
        "0.01",
        "--output-dir",
        out,
    )
    assert result.returncode == 0, explain(result)
    return out


@pytest.fixture(scope="module")
def two_class_run(tmp_path_factory):
    """A two-class run whose model ends in one logit (a user's sigmoid-style model)."""
    from helpers import copy_script

    folder = tmp_path_factory.mktemp("two-classes")
    x, y = separable_sequences(400, classes=2, seed=3)
    np.savez(
        folder / "two.npz",
        x_train=x[:320],
        y_train=y[:320],
        x_test=x[320:],
        y_test=y[320:],
        class_names=np.array(["no", "yes"]),
    )
    script = copy_script(
        "train_lstm.py",
        folder,
        lambda s: s.replace("Dense(outputs,", "Dense(1,"),
        "train_one_logit.py",
    )
    result = run_script(
        script,
        "--data",
        folder / "two.npz",
        "--epochs",
        "6",
        "--units",
        "8",
        "--learning-rate",
        "0.01",
        "--output-dir",
        folder / "run",
        cwd=folder,
    )
    assert result.returncode == 0, explain(result)
    return folder / "run", x[320:], y[320:]


# --------------------------------------------------------------------------------------
# Arrays, texts, images
# --------------------------------------------------------------------------------------
def test_predict_reads_batches_single_examples_and_npz_files(sequence_run, tmp_path):
    x, y = separable_sequences(40, seed=9)  # examples the run never saw
    np.save(tmp_path / "new.npy", x)
    found = predicted_classes(predict(sequence_run, "new.npy", cwd=tmp_path))
    assert np.mean(np.array(found, dtype=int) == y) > 0.9
    np.save(tmp_path / "one.npy", x[0])  # one example: (steps, features)
    assert predicted_classes(predict(sequence_run, "one.npy", cwd=tmp_path)) == found[:1]
    np.savez(tmp_path / "x.npz", x=x[:5], y=y[:5])
    np.savez(
        tmp_path / "decoy.npz", x=x[5:10], x_test=x[:5]
    )  # x is read, x_test only without x
    assert (
        predicted_classes(predict(sequence_run, "x.npz", "decoy.npz", cwd=tmp_path))
        == found[:10]
    )


def test_best_keras_is_read_with_model_best(sequence_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(sequence_run, run)
    shutil.copy(run / "model.keras", run / "final.keras")
    (run / "best.keras").unlink()
    x, _ = separable_sequences(4, seed=9)
    np.save(tmp_path / "x.npy", x)
    assert predict(run, "x.npy", cwd=tmp_path).returncode == 0
    missing = predict(run, "x.npy", "--model", "best", cwd=tmp_path)
    assert missing.returncode == 1 and "best.keras: not found" in missing.stderr


def test_two_classes_from_one_logit_are_the_models_own_sigmoid(two_class_run, tmp_path):
    import keras

    from rnn_scripts.preprocess import Preprocessing

    run, x, y = two_class_run
    np.save(tmp_path / "x.npy", x)
    rows = json_rows(predict(run, "x.npy", "--json", cwd=tmp_path))
    model = keras.saving.load_model(run / "model.keras")
    logits = model.predict(Preprocessing.load(run).apply(x), verbose=0)[:, 0]
    yes = 1 / (1 + np.exp(-logits))
    np.testing.assert_allclose([r["probabilities"]["yes"] for r in rows], yes, atol=1e-5)
    assert [r["class"] for r in rows] == ["yes" if p > 0.5 else "no" for p in yes]
    assert np.mean(np.array([r["class_id"] for r in rows]) == y) > 0.9


def test_text_runs_read_sentences_text_files_and_stdin_with_true_line_numbers(
    text_run, tmp_path
):
    texts, labels = sentences(30, seed=11)
    (tmp_path / "new.txt").write_text("\n".join(texts[10:]) + "\n")
    result = predict(
        text_run,
        *texts[:10],
        "new.txt",
        "-",
        cwd=tmp_path,
        stdin="\n\nMy puppy can fetch and bark\n",
    )
    found = predicted_classes(result)
    assert len(found) == 31 and np.mean(np.array(found[:30]) == np.array(labels)) > 0.9
    assert found[-1] == "dogs" and result.stdout.splitlines()[-1].startswith(
        "stdin:3: dogs ("
    )


def test_json_lines_carry_every_class_probability(text_run, tmp_path):
    [row] = json_rows(
        predict(text_run, "a kitten with whiskers", "--json", cwd=tmp_path)
    )
    assert row["class"] == "cats" and row["class_id"] == 0
    assert sum(row["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    assert row["probability"] == max(row["probabilities"].values())


def test_a_word_that_names_a_file_is_read_as_a_file_with_a_warning_unless_text(
    text_run, tmp_path
):
    (tmp_path / "bark").write_text("purr whiskers kitten\n")
    as_file = predict(text_run, "bark", cwd=tmp_path)
    assert (
        predicted_classes(as_file) == ["cats"]
        and "'bark' is a file here" in as_file.stderr
    )
    as_text = predict(
        text_run, "--text", "bark", "-", cwd=tmp_path
    )  # "-" too is text here
    found = predicted_classes(as_text)
    assert found[0] == "dogs" and len(found) == 2 and as_text.stderr == ""


def test_a_sentence_longer_than_a_file_name_is_text(text_run, tmp_path):
    long = "my puppy loves to fetch and bark at the kennel " * 12  # 576 bytes
    assert predicted_classes(predict(text_run, long, cwd=tmp_path)) == ["dogs"]


def test_an_empty_argument_is_skipped_with_a_warning(text_run, tmp_path):
    result = predict(text_run, "", "gills and fins", cwd=tmp_path)
    assert (
        predicted_classes(result) == ["fish"]
        and "empty argument was skipped" in result.stderr
    )


def test_png_images_of_any_size_polarity_and_transparency_read_as_the_training_images(
    image_run, tmp_path
):
    import matplotlib.pyplot as plt

    from rnn_scripts.data.official import synthetic_images

    assert read_metrics(image_run)["test_accuracy"] > 0.9
    images, labels = synthetic_images(12, np.random.default_rng(99))
    names = []
    for i, image in enumerate(images):
        big = np.kron(image, np.ones((5, 4), np.uint8))  # 140 x 112 pixels
        if i % 3 == 1:
            big = 255 - big  # dark rows on a light page: turned light on dark
        if (
            i % 3 == 2
        ):  # a transparent background: the rows are opaque, the page shows through
            rgba = np.zeros((*big.shape, 4))
            rgba[..., :3] = 0.0
            rgba[..., 3] = big / 255.0  # black ink whose opacity draws the rows
            plt.imsave(tmp_path / f"{i}.png", rgba)
        else:
            plt.imsave(tmp_path / f"{i}.png", big, cmap="gray", vmin=0, vmax=255)
        names.append(f"{i}.png")
    np.save(tmp_path / "raw.npy", images)
    from_png = predicted_classes(predict(image_run, *names, cwd=tmp_path))
    from_array = predicted_classes(predict(image_run, "raw.npy", cwd=tmp_path))
    assert (
        from_png == from_array and np.mean(np.array(from_png, dtype=int) == labels) > 0.9
    )


def test_alpha_compositing_puts_a_transparent_page_behind_the_ink(tmp_path):
    import matplotlib.pyplot as plt

    from rnn_scripts.predict import read_image

    rgba = np.zeros((28, 28, 4))
    rgba[10:12, :, 3] = 1.0  # opaque black rows; the rest transparent
    plt.imsave(tmp_path / "a.png", rgba)
    image = read_image(tmp_path / "a.png", {"shape": [28, 28], "background": "dark"})
    assert (
        image[10:12].max() > 250 and image[:10].max() < 5
    )  # white rows on black, as MNIST


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_tensorflow_trained_model_loads_and_predicts_the_same_on(
    backend, image_run, tmp_path
):
    from rnn_scripts.data.official import synthetic_images

    images, _ = synthetic_images(12, np.random.default_rng(99))
    np.save(tmp_path / "raw.npy", images)
    mine = json_rows(predict(image_run, "raw.npy", "--json", cwd=tmp_path))
    theirs = json_rows(
        predict(image_run, "raw.npy", "--json", "--backend", backend, cwd=tmp_path)
    )
    for a, b in zip(mine, theirs):
        assert a["class"] == b["class"] and a["probability"] == pytest.approx(
            b["probability"], abs=1e-4
        )
    program = "import keras, sys; m = keras.saving.load_model(sys.argv[1]); print(m.steps_per_execution)"
    for name in ("model.keras", "best.keras"):  # a plain load_model, no compile=False
        done = subprocess.run(
            [sys.executable, "-c", program, str(image_run / name)],
            env=script_env({"KERAS_BACKEND": backend}),
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0 and done.stdout.strip().endswith("1"), done.stderr[
            -1500:
        ]


@pytest.mark.parametrize("trained_on", BACKENDS)
def test_a_model_trained_on_jax_or_torch_loads_and_predicts_the_same_on_every_backend(
    trained_on, tmp_path
):
    from rnn_scripts.data.official import synthetic_images

    out = tmp_path / "run"
    result = run_script(
        "train_gru.py",
        "--backend",
        trained_on,
        "--synthetic",
        "--limit",
        "300",
        "--epochs",
        "1",
        "--units",
        "8",
        "--output-dir",
        out,
    )
    assert result.returncode == 0, explain(result)
    np.save(tmp_path / "raw.npy", synthetic_images(6, np.random.default_rng(5))[0])
    found = {
        b: json_rows(predict(out, "raw.npy", "--json", "--backend", b, cwd=tmp_path))
        for b in ("tensorflow", *BACKENDS)
    }
    for rows in found.values():
        np.testing.assert_allclose(
            [r["probability"] for r in rows],
            [r["probability"] for r in found[trained_on]],
            atol=1e-4,
        )


def test_word_ids_of_an_imdb_run_and_raw_text_with_its_word_index(tmp_path):
    out = tmp_path / "run"
    result = run_script(
        "train_imdb_bilstm.py",
        "--synthetic",
        "--smoke",
        "--units",
        "4",
        "--vocab-size",
        "500",
        "--output-dir",
        out,
    )
    assert result.returncode == 0, explain(result)
    np.save(tmp_path / "ids.npy", np.array([[1, 5, 6, 7], [1, 60, 61, 0]]))
    assert len(predicted_classes(predict(out, "ids.npy", cwd=tmp_path))) == 2
    np.save(
        tmp_path / "too_big.npy", np.array([[1, 5, 500]])
    )  # ids must stay below vocab_size
    too_big = predict(out, "too_big.npy", cwd=tmp_path)
    # named with the file, before Keras loads (the Python API checks the ids again, without a file)
    assert (
        too_big.returncode == 1
        and "too_big.npy: word ids must lie in 0..499" in too_big.stderr
    ), explain(too_big)
    np.save(tmp_path / "top.npy", np.array([[1, 5, 499]]))
    assert predict(out, "top.npy", cwd=tmp_path).returncode == 0
    refused = predict(out, "what a film", cwd=tmp_path)
    assert (
        refused.returncode == 1 and "this run reads tokens from files" in refused.stderr
    ), explain(refused)
    spec = json.loads((out / "preprocessing.json").read_text())
    (out / "preprocessing.json").write_text(
        json.dumps({**spec, "imdb_words": True})
    )  # as a real IMDB run
    offline = predict(
        out,
        "what a film",
        cwd=tmp_path,
        env={"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"},
    )
    assert offline.returncode == 1 and offline.stderr.count("\n") == 1, explain(offline)
    assert "imdb_word_index.json" in offline.stderr and "--word-index" in offline.stderr
    (tmp_path / "index.json").write_text(
        json.dumps({"what": 2, "a": 0, "film": 14, "rare": 900})
    )
    with_index = predict(
        out, "What a rare film!", "--word-index", "index.json", "--json", cwd=tmp_path
    )
    assert json_rows(with_index)[0]["class"] in ("negative", "positive")


def test_raw_text_becomes_the_imdb_datasets_word_ids_and_rare_words_are_unknown():
    from rnn_scripts.preprocess import Preprocessing

    words = Preprocessing(
        {"kind": "tokens", "vocab_size": 50},
        word_index={"the": 1, "film": 19, "don't": 88},
    )
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
    loaded = Preprocessing.load(tmp_path)
    assert loaded.word_index == {"good": 7} and loaded.encode_words("good") == [1, 10]


# --------------------------------------------------------------------------------------
# --labels: a labelled file, evaluated
# --------------------------------------------------------------------------------------
def test_a_labelled_file_gives_predictions_csv_and_the_runs_metrics(
    sequence_run, tmp_path
):
    import csv

    x, y = separable_sequences(50, seed=21)
    np.savez(tmp_path / "labelled.npz", x=x, y=y)
    result = predict(
        sequence_run,
        "labelled.npz",
        "--labels",
        "--output",
        tmp_path / "p.csv",
        cwd=tmp_path,
    )
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
    assert f"accuracy {accuracy:.4f}" in result.stdout.splitlines()[0]
    per_class = [line for line in result.stdout.splitlines() if line.startswith("  ")]
    assert [line.split(":")[0].strip() for line in per_class] == ["0", "1", "2", "3"]


def test_a_labelled_text_csv_is_evaluated_with_its_class_names(text_run, tmp_path):
    texts, labels = sentences(40, seed=13)
    (tmp_path / "t.csv").write_text(
        "label,text\n" + "".join(f"{l},{t}\n" for t, l in zip(texts, labels))
    )
    result = predict(text_run, "t.csv", "--labels", cwd=tmp_path)
    assert result.returncode == 0, explain(result)
    assert (tmp_path / "predictions.csv").is_file()
    assert float(result.stdout.split()[1]) > 0.9
    (tmp_path / "birds.csv").write_text("label,text\nbirds,tweet tweet\n")
    unknown = predict(text_run, "birds.csv", "--labels", cwd=tmp_path)
    assert (
        unknown.returncode == 1
        and "'birds' is not one of the training classes" in unknown.stderr
    )


# --------------------------------------------------------------------------------------
# What predict.py cannot handle: one line, mostly before Keras loads
# --------------------------------------------------------------------------------------
def tampered(spec):
    return lambda run: (run / "preprocessing.json").write_text(
        json.dumps(spec(json.loads((run / "preprocessing.json").read_text())))
    )


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
        ("run", ["wrong.npy"], "expected images of (28, 28), got (5, 5)"),
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
    ],
)
def test_what_predict_cannot_handle_is_one_line(
    image_run, tmp_path, setup, inputs, words
):
    import shutil

    import matplotlib.pyplot as plt

    run = tmp_path / "run"
    if setup != "none":
        shutil.copytree(image_run, run)
    edits = {
        "no spec": lambda r: (r / "preprocessing.json").unlink(),
        "unfinished": lambda r: (r / "model.keras").unlink(),
        "broken": lambda r: (r / "model.keras").write_bytes(b"PK\x03\x04 not a model"),
        "kind": tampered(lambda s: {k: v for k, v in s.items() if k != "kind"}),
        "shape": tampered(lambda s: {**s, "shape": "28x28"}),
        "names": tampered(lambda s: {**s, "class_names": ["a"] * 10}),
        "list": lambda r: (r / "preprocessing.json").write_text("[1, 2]"),
    }
    if setup in edits:
        edits[setup](run)
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    plt.imsave(tmp_path / "small.png", np.zeros((4, 4)))
    head = bytearray((tmp_path / "small.png").read_bytes())
    head[16:24] = (30000).to_bytes(4, "big") * 2  # the IHDR chunk's width and height
    (tmp_path / "huge.png").write_bytes(bytes(head))
    np.save(tmp_path / "wrong.npy", np.zeros((5, 5)))
    np.save(tmp_path / "x.npy", np.zeros((28, 28)))
    np.save(tmp_path / "nan.npy", np.full((28, 28), np.nan))
    np.save(tmp_path / "empty.npy", np.zeros((0, 28, 28)))
    np.save(tmp_path / "strings.npy", np.array(["a", "b"]))
    np.save(
        tmp_path / "pickle.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True
    )
    result = predict(run, *inputs, cwd=tmp_path, stdin="")
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
def test_an_edited_text_run_is_one_line(text_run, tmp_path, edit, words):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(text_run, run)
    spec, vocabulary = edit(
        json.loads((run / "preprocessing.json").read_text()),
        json.loads((run / "vocabulary.json").read_text()),
    )
    (run / "preprocessing.json").write_text(json.dumps(spec))
    (run / "vocabulary.json").write_text(json.dumps(vocabulary))
    result = predict(run, "--text", "a kitten", cwd=tmp_path)
    assert (
        result.returncode == 1
        and result.stderr.count("\n") == 1
        and words in result.stderr
    ), explain(result)


def test_input_errors_answer_before_keras_loads(image_run, tmp_path):
    env = without_backends(tmp_path)
    for inputs, words in (
        (["missing.npy"], "file not found"),
        (["x.txt"], "expected a .png"),
    ):
        (tmp_path / "x.txt").write_text("x")
        result = predict(image_run, *inputs, cwd=tmp_path, env=env)
        assert result.returncode == 1 and words in result.stderr, explain(result)
    result = predict(tmp_path / "nothing", "x.npy", cwd=tmp_path, env=env)
    assert result.returncode == 1 and "no run folder" in result.stderr


def test_stdin_closed_is_one_line(text_run, tmp_path):
    command = [sys.executable, str(ROOT / "predict.py"), str(text_run), "-"]
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
        f"{sys.executable} {ROOT / 'predict.py'} {text_run} - <&-",
        shell=True,
        cwd=tmp_path,
        env=script_env(),
        capture_output=True,
        text=True,
    )
    assert (
        closed.returncode == 1
        and closed.stderr.count("\n") == 1
        and "standard input" in closed.stderr
    ), explain(closed)


def test_bad_predict_arguments_exit_2(image_run, tmp_path):
    result = predict(image_run, cwd=tmp_path)  # no input
    assert result.returncode == 2 and result.stderr.count("\n") == 1, explain(result)


def test_predictions_piped_into_head_end_quietly(sequence_run, tmp_path):
    x, _ = separable_sequences(3000, seed=1)
    np.save(tmp_path / "many.npy", x)
    done = subprocess.run(
        f"{sys.executable} {ROOT / 'predict.py'} {sequence_run} many.npy | head -1",
        shell=True,
        cwd=tmp_path,
        env=script_env(),
        capture_output=True,
        text=True,
    )
    assert done.stdout.count("\n") == 1 and "Traceback" not in done.stderr, explain(done)
