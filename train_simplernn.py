"""Two-layer SimpleRNN (ReLU) on MNIST: each 28x28 image is read as 28 time steps
of 28 pixels.

    python train_simplernn.py            # 10 epochs on MNIST (offline: the shipped sample)
    python train_simplernn.py --smoke    # one quick epoch on 2,000 examples
    python train_simplernn.py --help     # every flag
"""

import common  # first: it picks the backend and quiets TensorFlow before Keras loads

import keras
from keras import layers


def build_model(units=512):
    return keras.Sequential(
        [
            keras.Input(shape=(None, 28)),  # (time steps, pixels per step); any length
            layers.SimpleRNN(units, activation="relu", return_sequences=True),
            layers.SimpleRNN(units, activation="relu"),
            # float32 logits keep the loss exact under --mixed-precision
            layers.Dense(10, dtype="float32"),
        ],
        name="simplernn",
    )


if __name__ == "__main__":
    common.run(build_model, task="mnist", epochs=10, units=512, description=__doc__)
