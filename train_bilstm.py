"""Two-layer bidirectional LSTM on MNIST: each image is read as 28 steps of 28
pixels, forwards and backwards.

    python train_bilstm.py            # 10 epochs on MNIST (offline: the shipped sample)
    python train_bilstm.py --smoke    # one quick epoch on 2,000 examples
    python train_bilstm.py --help     # every flag
"""

import common  # first: it picks the backend and quiets TensorFlow before Keras loads

import keras
from keras import layers


def build_model(units=256, use_cudnn="auto"):
    return keras.Sequential(
        [
            keras.Input(shape=(None, 28)),  # (time steps, pixels per step); any length
            layers.Bidirectional(
                layers.LSTM(units, return_sequences=True, use_cudnn=use_cudnn)
            ),
            layers.Bidirectional(layers.LSTM(units, use_cudnn=use_cudnn)),
            # float32 logits keep the loss exact under --mixed-precision
            layers.Dense(10, dtype="float32"),
        ],
        name="bilstm",
    )


if __name__ == "__main__":
    common.run(build_model, task="mnist", epochs=10, units=256, description=__doc__)
