"""oneshot-rlvr: a faithful, tested re-implementation of One-Shot RLVR (arXiv 2504.20571)."""

from pathlib import Path

__version__ = "0.1.0"

# The repository root holds resources/ (data, tokenizer); the package finds it relative to itself
# when installed in editable mode, or through $RLVR_RESOURCES for other layouts.
import os as _os

RESOURCES = Path(_os.environ.get("RLVR_RESOURCES", Path(__file__).resolve().parents[2] / "resources"))
TOKENIZER_DIR = RESOURCES / "tokenizers" / "qwen2.5-math-1.5b"
