"""Bidirectional LSTM for IMDB review sentiment (positive or negative).

Reviews are word ids, cut to their first 200 and padded with 0 at the end; the embedding
masks the padding, which keeps the LSTM on its cuDNN path on a GPU.

python train_imdb_bilstm.py                     # 3 epochs (downloads IMDB once)
python train_imdb_bilstm.py --data-dir DIR      # read DIR/imdb.npz instead
python train_imdb_bilstm.py --data aclImdb      # the raw review archive, unpacked
python train_imdb_bilstm.py --data texts.csv    # your own labelled texts (see README)
python train_imdb_bilstm.py --synthetic --smoke
"""

import common


def build_model(vocab_size, outputs, units=64, embedding_size=64):
    """vocab_size and outputs come from the data; the rest are flags.

    units: units per LSTM direction
    embedding_size: values per word
    """
    import keras  # here, not at the top: the command line picks the backend first
    from keras import layers

    return keras.Sequential(
        [
            keras.Input(shape=(None,), dtype="int32"),  # word ids, 0 = padding
            layers.Embedding(vocab_size, embedding_size, mask_zero=True),
            layers.Bidirectional(layers.LSTM(units)),
            layers.Dense(64, activation="relu"),
            # logits (or values); float32 keeps them exact under --mixed-precision
            layers.Dense(outputs, dtype="float32"),
        ],
        name="imdb_bilstm",
    )


if __name__ == "__main__":
    common.run(build_model, reads="text", epochs=3, description=__doc__)
