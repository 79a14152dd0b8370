"""Two-layer SimpleRNN (ReLU) on MNIST: each 28x28 image is read as 28 time steps of 28
pixels.

python train_simplernn.py                # 10 epochs on MNIST (offline: the sample)
python train_simplernn.py --smoke        # one quick epoch on 300 examples
python train_simplernn.py --data my.npz  # your own sequences (see README)
python train_simplernn.py --help         # every flag
"""

import common


def build_model(features, outputs, units=512, num_layers=2):
    """features and outputs come from the data; the rest are flags.

    units: units per recurrent layer
    num_layers: recurrent layers
    """
    import keras  # here, not at the top: the command line picks the backend first
    from keras import layers

    model = keras.Sequential(name="simplernn")
    model.add(keras.Input(shape=(None, features)))  # (time steps, features); any length
    for i in range(num_layers):
        more = i < num_layers - 1  # every layer but the last passes on all its steps
        model.add(layers.SimpleRNN(units, activation="relu", return_sequences=more))
    # logits (or values); float32 keeps them exact under --mixed-precision
    model.add(layers.Dense(outputs, dtype="float32"))
    return model


if __name__ == "__main__":
    common.run(build_model, reads="sequences", epochs=10, description=__doc__)
