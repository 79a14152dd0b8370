"""Two-layer LSTM on MNIST: each 28x28 image is read as 28 time steps of 28 pixels.

python train_lstm.py                 # 10 epochs on MNIST (offline: the shipped sample)
python train_lstm.py --smoke         # one quick epoch on 2,000 examples
python train_lstm.py --data my.npz   # your own sequences (see README)
python train_lstm.py --help          # every flag
"""

import common  # first: it sets up the backend and signal handling before Keras loads

import keras
from keras import layers


# features and classes are read from the data; the rest are flags (--units, --layers).
def build_model(features=28, classes=10, units=256, num_layers=2, use_cudnn="auto"):
    model = keras.Sequential(name="lstm")
    model.add(keras.Input(shape=(None, features)))  # (time steps, features); any length
    for i in range(num_layers):
        more = i < num_layers - 1  # every layer but the last passes on all its steps
        model.add(layers.LSTM(units, return_sequences=more, use_cudnn=use_cudnn))
    # float32 logits keep the loss exact under --mixed-precision
    model.add(layers.Dense(classes, dtype="float32"))
    return model


if __name__ == "__main__":
    common.run(build_model, epochs=10, description=__doc__)
