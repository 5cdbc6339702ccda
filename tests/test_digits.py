"""The rotated-digits image dataset (real scikit-learn digits; target = rotation angle)."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from jaxunlearn.data.sources import build_task, load_digits_rotation


@pytest.fixture(scope="module")
def raw():
    return load_digits_rotation(copies=1, max_angle=30.0, size=8)


def test_shapes_ranges_and_split_sizes(raw):
    n_images = load_digits().images.shape[0]
    sizes = {name: y.shape[0] for name, (x, y) in raw.splits.items()}
    assert sum(sizes.values()) == n_images
    assert sizes["train"] == int(0.7 * n_images)
    for x, y in raw.splits.values():
        assert x.shape[1:] == (8, 8, 1) and x.dtype == np.float32
        assert x.min() >= 0.0 and x.max() <= 1.0
        assert np.all(np.abs(y) <= 30.0)


def test_zero_rotation_reproduces_the_real_digits():
    raw = load_digits_rotation(copies=1, max_angle=1e-6, size=8)
    real = load_digits().images.astype(np.float32) / 16.0
    x = raw.splits["test"][0][..., 0]
    # every test image is one of the real digits, unrotated (angle ~0)
    distances = np.abs(x[:, None] - real[None]).reshape(x.shape[0], real.shape[0], -1).max(axis=2)
    assert np.all(distances.min(axis=1) < 1e-4)


def test_default_rule_and_task(raw):
    task = build_task(raw, "label>=20")
    forget = np.asarray(task.train.forget) > 0.5
    angles = raw.splits["train"][1]
    np.testing.assert_array_equal(forget, angles >= 20)


def test_bad_arguments_rejected():
    with pytest.raises(ValueError, match="copies >= 1"):
        load_digits_rotation(copies=0)
