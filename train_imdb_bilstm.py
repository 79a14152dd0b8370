"""Bidirectional LSTM for IMDB review sentiment (positive or negative).

Reviews are word ids, cut to their first 200 and padded with 0 at the end; the embedding
masks the padding, which keeps the LSTM on its cuDNN path on a GPU.

python train_imdb_bilstm.py                    # 3 epochs (downloads IMDB once)
python train_imdb_bilstm.py --data-dir DIR     # read DIR/imdb.npz instead
python train_imdb_bilstm.py --synthetic --smoke
python train_imdb_bilstm.py --data texts.csv   # your own labelled texts (see README)
"""

import common  # first: it sets up the backend and signal handling before Keras loads

import keras
from keras import layers


# vocab_size and classes are read from the data (--vocab-size caps the words kept).
def build_model(vocab_size=20000, classes=2, units=64, use_cudnn="auto"):
    return keras.Sequential(
        [
            keras.Input(shape=(None,), dtype="int32"),  # word ids, 0 = padding
            layers.Embedding(vocab_size, 64, mask_zero=True),
            layers.Bidirectional(layers.LSTM(units, use_cudnn=use_cudnn)),
            layers.Dense(64, activation="relu"),
            # two classes: one logit (> 0 is the second class); float32 for mixed precision
            layers.Dense(1 if classes == 2 else classes, dtype="float32"),
        ],
        name="imdb_bilstm",
    )


if __name__ == "__main__":
    common.run(build_model, epochs=3, description=__doc__)
