"""Export a finished run for serving: raw inputs in, probabilities (or values) out.

python export.py RUN                # RUN/export/saved_model (TensorFlow SavedModel)
python export.py RUN --format onnx  # RUN/export/model.onnx (onnxruntime)
python export.py --help             # everything else

Outside this repository, with the package installed: python -m rnn_scripts.export ...
"""

from rnn_scripts.export import main

if __name__ == "__main__":
    main()
