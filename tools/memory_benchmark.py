"""Memory and speed of data read from disk: peak resident memory of real runs on 1x and
10x the data, and training samples/s of the streamed path against the in-memory one.

Each run is `train_imdb_bilstm.py` (texts) or `train_lstm.py` (a series to forecast) as a
subprocess with a small model, whose own peak resident memory is read from the kernel
(os.wait4): one epoch on 1x and on 10x the data for the memory, three epochs on 1x for
the speed (training samples/s of the median epoch). Runs alternate between the variants,
round after round, so that each ratio compares the same minutes of this machine.

    python tools/memory_benchmark.py                      # texts and series, 3 rounds
    python tools/memory_benchmark.py --rows 20000 --rounds 1 --sources csv

Sources (the 1x size is --rows examples; 10x is ten times as many):
  csv      labelled texts in a .csv, read record by record (streamed)
  folder   one .txt file per text in a folder per class (streamed)
  series   a .csv of series columns, forecast with --target (windows cut batch by batch)
  ids      the same texts as a .npz of word ids, held in memory: the in-memory path that
           csv's samples/s is compared with, on data that fits
"""

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WORDS = ("good bad fine awful great poor nice dull fun sad film plot actor scene story "
         "music ending twist cast script").split()  # fmt: skip
TEXT_FLAGS = [
    "--units",
    "8",
    "--embedding-size",
    "16",
    "--max-length",
    "64",
    "--vocab-size",
    "2000",
]
SERIES_FLAGS = ["--units", "8", "--target", "a", "--window", "32", "--horizon", "1"]
# speed: the median epoch of 3 leaves out the traced first
MEMORY_EPOCHS, SPEED_EPOCHS = (1, 3)


def texts(count, seed):
    """Reviews of 40-120 words, labelled by whether "good" words outnumber "bad" ones."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(40, 120, count)
    words = rng.choice(WORDS, lengths.sum())
    reviews = np.split(words, np.cumsum(lengths)[:-1])
    labels = [int((r == "good").sum() >= (r == "bad").sum()) for r in reviews]
    return [" ".join(r) for r in reviews], labels


def write_csv(path, count):
    reviews, labels = texts(count, 1)
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["label", "text"])
        writer.writerows(zip(labels, reviews))


def write_folder(path, count):
    reviews, labels = texts(count, 1)
    for i, (review, label) in enumerate(zip(reviews, labels)):
        folder = path / ("pos" if label else "neg")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i}.txt").write_text(review)


def write_ids(path, count):
    """The csv's texts as word ids (its training rows' vocabulary), padded to 64."""
    sys.path.insert(0, str(ROOT))
    import keras

    reviews, labels = texts(count, 1)
    vectorizer = keras.layers.TextVectorization(
        max_tokens=2000, output_sequence_length=64
    )
    vectorizer.adapt(np.array(reviews, dtype=object))
    ids = np.asarray(vectorizer(np.array(reviews, dtype=object)), np.int32)
    np.savez(path, x=ids, y=np.array(labels))


def write_series(path, count):
    rng = np.random.default_rng(1)
    t = np.arange(count)
    columns = np.stack(
        [
            np.sin(t / 20) + rng.normal(0, 0.1, count),
            np.cos(t / 30),
            rng.normal(0, 1, count),
        ],
        axis=1,
    )
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["a", "b", "c"])
        writer.writerows(np.round(columns, 5).tolist())


SOURCES = {
    "csv": ("train_imdb_bilstm.py", "texts.csv", write_csv, TEXT_FLAGS),
    "folder": ("train_imdb_bilstm.py", "texts", write_folder, TEXT_FLAGS),
    "series": ("train_lstm.py", "series.csv", write_series, SERIES_FLAGS),
    "ids": ("train_imdb_bilstm.py", "ids.npz", write_ids, TEXT_FLAGS),
}


def run(script, data, flags, folder):
    """(peak resident MiB, training samples/s, wall seconds) of one run."""
    out = Path(tempfile.mkdtemp(dir=folder))
    command = [
        sys.executable,
        str(ROOT / script),
        "--data",
        str(data),
        *flags,
        "--output-dir",
        str(out / "run"),
    ]
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        raise SystemExit(
            f"{' '.join(command)} failed: {process.stderr.read().decode()[-500:]}"
        )
    metrics = json.loads((out / "run" / "metrics.json").read_text())
    return usage.ru_maxrss / 1024, metrics["train_samples_per_second"], seconds


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows", type=int, default=20000, help="examples at 1x (series: 5 rows each)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--sources",
        default="csv,folder,series",
        help="comma-separated: csv, folder, series",
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument(
        "--speed-only",
        action="store_true",
        help="only csv's samples/s against ids' (no memory runs)",
    )
    args = parser.parse_args(argv)
    sources = args.sources.split(",")
    folder = Path(tempfile.mkdtemp(prefix="memory-benchmark-"))
    variants = {}
    for source in sources + (["ids"] if "csv" in sources else []):
        script, name, write, flags = SOURCES[source]
        for scale in (1, 10) if source != "ids" and not args.speed_only else (1,):
            rows = args.rows * scale * (5 if source == "series" else 1)
            data = folder / f"{scale}x-{name}"
            write(data, rows)
            if source != "ids" and not args.speed_only:
                variants[f"{source} {scale}x"] = (
                    script,
                    data,
                    ["--epochs", str(MEMORY_EPOCHS), *flags],
                    rows,
                )
            if source in ("csv", "ids") and scale == 1:
                variants[f"{source} speed"] = (
                    script,
                    data,
                    ["--epochs", str(SPEED_EPOCHS), *flags],
                    rows,
                )
    started, figures = time.perf_counter(), {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (script, data, flags, _) in variants.items():
            figures[name].append(run(script, data, flags, folder))
    report(figures, variants, sources, args, time.perf_counter() - started)


def spread(values):
    """The median with the range: '1234 [1200-1300]'."""
    low, high = min(values), max(values)
    return f"{statistics.median(values):7.0f} [{low:.0f}-{high:.0f}]"


def report(figures, variants, sources, args, seconds):
    print(
        "peak resident MiB, training samples/s and the run's wall seconds, median "
        f"[min-max] of {args.rounds} rounds"
    )
    result = {}
    for name, runs in figures.items():
        memory, speed, wall = ([run_[i] for run_ in runs] for i in range(3))
        result[name] = {
            "rows": variants[name][3],
            "peak_mib": memory,
            "samples_per_second": speed,
            "seconds": wall,
        }
        print(
            f"  {name:10} {variants[name][3]:>9,} rows  {spread(memory)} MiB  "
            f"{spread(speed)}/s  {statistics.median(wall):5.0f} s"
        )
    for source in sources if not args.speed_only else ():
        ratios = [
            ten[0] / one[0]
            for one, ten in zip(figures[f"{source} 1x"], figures[f"{source} 10x"])
        ]
        print(
            f"  {source}: 10x the data costs {statistics.median(ratios):.2f}x "
            f"[{min(ratios):.2f}-{max(ratios):.2f}] the memory"
        )
        result[f"{source} memory 10x / 1x"] = ratios
    if "csv" in sources:
        ratios = [
            csv_[1] / ids[1]
            for csv_, ids in zip(figures["csv speed"], figures["ids speed"])
        ]
        print(
            "  csv read from disk / ids in memory, samples/s: "
            f"{statistics.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]"
        )
        result["csv / ids samples per second"] = ratios
    print(f"wall time {seconds:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
