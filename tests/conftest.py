import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # import common, rnn_scripts and the scripts' build_model
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
