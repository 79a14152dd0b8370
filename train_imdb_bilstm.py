"""Bidirectional LSTM for IMDB review sentiment (positive or negative).

Reviews are word ids, cut to their first 200 and padded with 0 at the end; the embedding
masks the padding, which keeps the LSTM on its cuDNN path on a GPU.

    python train_imdb_bilstm.py                    # 3 epochs (downloads IMDB once)
    python train_imdb_bilstm.py --data-dir DIR     # read DIR/imdb.npz instead
    python train_imdb_bilstm.py --synthetic --smoke
"""

import common  # first: it picks the backend and quiets TensorFlow before Keras loads

import keras
from keras import layers


def build_model(vocab_size=20000, units=64, use_cudnn="auto"):
    return keras.Sequential(
        [
            keras.Input(shape=(None,), dtype="int32"),  # word ids, 0 = padding
            layers.Embedding(vocab_size, 64, mask_zero=True),
            layers.Bidirectional(layers.LSTM(units, use_cudnn=use_cudnn)),
            layers.Dense(64, activation="relu"),
            layers.Dense(1, dtype="float32"),  # one logit: > 0 is positive
        ],
        name="imdb_bilstm",
    )


if __name__ == "__main__":
    common.run(build_model, task="imdb", epochs=3, units=64, description=__doc__)
