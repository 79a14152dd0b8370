"""Write example files of "your own data" for the README's walk-through, in the current
folder:

    my_sequences.npz    700 sequences, 50 steps x 3 features, 4 classes (100 for test)
    new_sequences.npy   8 more sequences for predict.py (their classes: printed)
    my_sentences.csv    900 labelled sentences (cats, dogs, fish), columns label and text

    python tools/make_example_data.py

The classes are easy to tell apart, so a small model learns them in a few epochs.
"""

import csv

import numpy as np

WORDS = {  # each class has its own words, among filler words all classes share
    "cats": "purr whiskers meow kitten litter",
    "dogs": "bark fetch puppy leash kennel",
    "fish": "fins gills aquarium swim scales",
}
FILLER = "the a and with my our very little big happy".split()


def separable_sequences(count, steps=50, features=3, classes=4, seed=0):
    """Noise plus a class-specific offset on one feature in the second half of the steps,
    in raw units far from 0 and 1 (so that standardizing matters)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, count)
    x = rng.normal(0, 1, (count, steps, features)).astype(np.float32)
    for c in range(classes):
        x[y == c, steps // 2 :, c % features] += 3.0 if c < features else -3.0
    return x * 4 + 10, y


def sentences(count, seed=0):
    rng = np.random.default_rng(seed)
    names = list(WORDS)
    labels = rng.integers(0, len(names), count)
    texts = []
    for label in labels:
        words = list(rng.choice(FILLER, 6)) + list(
            rng.choice(WORDS[names[label]].split(), 2)
        )
        rng.shuffle(words)
        texts.append(" ".join(words).capitalize() + "!")
    return texts, [names[i] for i in labels]


def write_sequences_npz(path, train=600, test=100, with_test=True, **overrides):
    x, y = separable_sequences(train + test)
    arrays = {"x_train": x[:train], "y_train": y[:train]}
    if with_test:
        arrays.update(x_test=x[train:], y_test=y[train:])
    arrays.update(overrides)
    np.savez(path, **arrays)
    return arrays


def write_sentences_csv(
    path, count=900, text_column="text", label_column="label", seed=0
):
    texts, labels = sentences(count, seed)
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow([label_column, text_column])
        writer.writerows(zip(labels, texts))
    return texts, labels


def main():
    write_sequences_npz("my_sequences.npz")
    x, y = separable_sequences(8, seed=7)
    np.save("new_sequences.npy", x)
    write_sentences_csv("my_sentences.csv")
    print(
        "wrote my_sequences.npz, my_sentences.csv and new_sequences.npy, whose classes "
        "are",
        *y,
    )


if __name__ == "__main__":
    main()
