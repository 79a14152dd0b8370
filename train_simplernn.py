"""Two-layer SimpleRNN (ReLU) on MNIST: each 28x28 image is read as 28 time steps
of 28 pixels.

python train_simplernn.py                 # 10 epochs on MNIST (offline: the shipped sample)
python train_simplernn.py --smoke         # one quick epoch on 2,000 examples
python train_simplernn.py --data my.npz   # your own sequences (see README)
python train_simplernn.py --help          # every flag
"""

import common  # first: it sets up the backend and signal handling before Keras loads

import keras
from keras import layers


# features and classes are read from the data; the rest are flags (--units, --layers).
def build_model(features=28, classes=10, units=512, num_layers=2):
    model = keras.Sequential(name="simplernn")
    model.add(keras.Input(shape=(None, features)))  # (time steps, features); any length
    for i in range(num_layers):
        more = i < num_layers - 1  # every layer but the last passes on all its steps
        model.add(layers.SimpleRNN(units, activation="relu", return_sequences=more))
    # float32 logits keep the loss exact under --mixed-precision
    model.add(layers.Dense(classes, dtype="float32"))
    return model


if __name__ == "__main__":
    common.run(build_model, epochs=10, description=__doc__)
