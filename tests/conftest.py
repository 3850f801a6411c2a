"""Shared pytest setup: make the repository importable (``vlt``, ``data_prep``) from any working directory."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import os  # noqa: E402

# Tests never reach a model hub: hub names must resolve from the local cache or fail clearly.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
