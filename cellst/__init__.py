"""cellst: fine-tune CLIP image-text models on cell microscopy with sentence-transformers.

The public API; everything the ``cellst`` command does is one of these calls.
"""

from .config import FinetuneConfig
from .data import Columns, load_splits, read_split
from .errors import CellstError
from .evaluation import evaluate, format_table
from .hub import push
from .losses import LOSSES
from .model import load_model
from .scratch import PRESETS, init_model
from .training import finetune

__version__ = "0.1.0"

__all__ = ["CellstError", "Columns", "FinetuneConfig", "LOSSES", "PRESETS", "evaluate", "finetune", "format_table",
           "init_model", "load_model", "load_splits", "push", "read_split"]
