"""Tests for jaxunlearn.train.losses against NumPy references computed here."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn.train import losses as L

B = 6
_RNG = np.random.default_rng(0)
PRED = _RNG.normal(size=(B, 1)).astype(np.float32)
TARGET = _RNG.normal(size=(B, 1)).astype(np.float32)


def _np(a):
    return np.asarray(a, np.float64)


# --------------------------------------------------------------------------- losses


def test_l1_loss_matches_numpy():
    out = L.l1_loss(jnp.asarray(PRED), jnp.asarray(TARGET))
    assert out.shape == (B, 1)
    np.testing.assert_allclose(_np(out), np.abs(_np(PRED) - _np(TARGET)), rtol=1e-6, atol=1e-7)


def test_mse_loss_matches_numpy():
    out = L.mse_loss(jnp.asarray(PRED), jnp.asarray(TARGET))
    assert out.shape == (B, 1)
    np.testing.assert_allclose(_np(out), (_np(PRED) - _np(TARGET)) ** 2, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("q", [0.1, 0.5, 0.9])
def test_quantile_loss_matches_numpy_pinball(q):
    out = L.quantile_loss(jnp.asarray(PRED), jnp.asarray(TARGET), q=q)
    assert out.shape == (B, 1)
    e = _np(TARGET) - _np(PRED)
    # Pinball loss written branch-wise (under-prediction costs q, over-prediction 1 - q).
    expected = np.where(e >= 0, q * e, (1.0 - q) * (-e))
    np.testing.assert_allclose(_np(out), expected, rtol=1e-6, atol=1e-7)
    assert np.all(_np(out) >= 0)


def test_quantile_half_is_half_l1():
    out = L.quantile_loss(jnp.asarray(PRED), jnp.asarray(TARGET), q=0.5)
    np.testing.assert_allclose(_np(out), 0.5 * np.abs(_np(PRED) - _np(TARGET)), rtol=1e-6, atol=1e-7)


def test_quantile_loss_is_asymmetric():
    # target above the prediction by 1: cost q; below by 1: cost 1 - q.
    pred = jnp.zeros((2, 1), jnp.float32)
    target = jnp.asarray([[1.0], [-1.0]], jnp.float32)
    np.testing.assert_allclose(_np(L.quantile_loss(pred, target, q=0.9)), [[0.9], [0.1]], rtol=1e-6)


@pytest.mark.parametrize("name", ["l1", "mse", "quantile"])
@pytest.mark.parametrize("swap", [False, True])
def test_shape_mismatch_raises(name, swap):
    fn = L.get_loss(name)
    a, b = jnp.asarray(PRED[:, 0]), jnp.asarray(TARGET)  # [B] vs [B, 1]
    if swap:
        a, b = b, a
    with pytest.raises(ValueError, match="shape"):
        fn(a, b)


def test_get_loss_known_names():
    assert L.get_loss("l1") is L.l1_loss
    assert L.get_loss("mse") is L.mse_loss
    assert L.get_loss("quantile") is L.quantile_loss


def test_get_loss_unknown_raises():
    with pytest.raises(ValueError, match="huber"):
        L.get_loss("huber")


# --------------------------------------------------------------------------- masked_mean

VALUES = _RNG.normal(size=B).astype(np.float32)


@pytest.mark.parametrize(
    "weights",
    [
        [1, 0, 1, 1, 0, 1],
        [1, 1, 1, 1, 1, 1],
        [0.5, 2.0, 0.0, 1.5, 3.0, 0.25],
        [0.2, 0.0, 0.3, 0.0, 0.0, 0.0],  # fractions summing below 1: still their weighted mean
        [0, 0, 0, 0, 1, 0],
    ],
)
@pytest.mark.parametrize("column", [False, True])
def test_masked_mean_matches_numpy(weights, column):
    w = np.asarray(weights, np.float32)
    v = VALUES[:, None] if column else VALUES
    out = L.masked_mean(jnp.asarray(v), jnp.asarray(w))
    assert out.shape == ()
    expected = sum(float(a) * float(b) for a, b in zip(VALUES, w, strict=True)) / float(w.sum())
    np.testing.assert_allclose(float(out), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("column", [False, True])
def test_masked_mean_all_zero_weights_is_zero(column):
    v = VALUES[:, None] if column else VALUES
    out = L.masked_mean(jnp.asarray(v), jnp.zeros((B,), jnp.float32))
    assert float(out) == 0.0


def test_masked_mean_accepts_bool_weights():
    w = np.array([True, False, True, False, False, True])
    out = L.masked_mean(jnp.asarray(VALUES), jnp.asarray(w))
    np.testing.assert_allclose(float(out), VALUES[w].astype(np.float64).mean(), rtol=1e-6)


@pytest.mark.parametrize(
    "v_shape, w_shape",
    [((B,), (B, 1)), ((B, 1), (B, 1)), ((B,), (B + 1,)), ((B, 2), (B,)), ((B,), (1,))],
)
def test_masked_mean_bad_shapes_raise(v_shape, w_shape):
    with pytest.raises(ValueError, match="masked_mean"):
        L.masked_mean(jnp.ones(v_shape, jnp.float32), jnp.ones(w_shape, jnp.float32))


# --------------------------------------------------------------------------- attention maps


def _np_attention(act):
    """Zagoruyko & Komodakis: F(A) = sum_c A_c^2 (dense: each unit a position), L2-normalised."""
    a = np.asarray(act, np.float64)
    b = a.shape[0]
    rows = []
    for i in range(b):
        if a.ndim == 2:
            m = a[i] ** 2
        else:
            m = np.zeros(a.shape[1:-1])
            for c in range(a.shape[-1]):
                m = m + a[i, ..., c] ** 2
        m = m.ravel()
        norm = np.sqrt(np.sum(m * m))
        rows.append(m / norm if norm > 0 else m)
    return np.stack(rows)


CONV = _RNG.normal(size=(B, 3, 4, 5)).astype(np.float32)  # [B, H, W, C]
SEQ = _RNG.normal(size=(B, 7, 3)).astype(np.float32)  # [B, T, H]
DENSE = _RNG.normal(size=(B, 9)).astype(np.float32)  # [B, H]


@pytest.mark.parametrize("act, p", [(CONV, 12), (SEQ, 7), (DENSE, 9)], ids=["conv", "seq", "dense"])
def test_attention_map_matches_numpy(act, p):
    out = np.asarray(L.attention_map(jnp.asarray(act)), np.float64)
    assert out.shape == (B, p)
    np.testing.assert_allclose(out, _np_attention(act), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), np.ones(B), rtol=1e-5)


def test_attention_map_is_scale_invariant_and_zero_safe():
    act = CONV.copy()
    act[2] = 0.0
    out = np.asarray(L.attention_map(jnp.asarray(act)))
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(out[2], 0.0)
    scaled = np.asarray(L.attention_map(jnp.asarray(act * 3.0)))
    np.testing.assert_allclose(scaled, out, rtol=1e-5, atol=1e-7)


STUDENT = (CONV, DENSE)
TEACHER = (_RNG.normal(size=CONV.shape).astype(np.float32), _RNG.normal(size=DENSE.shape).astype(np.float32))
WEIGHTS = np.array([1, 0, 1, 0, 1, 1], np.float32)


def _np_at_loss(student, teacher, w):
    total = 0.0
    for s, t in zip(student, teacher, strict=True):
        per_row = np.mean((_np_attention(s) - _np_attention(t)) ** 2, axis=1)
        total += float(np.sum(per_row * w) / max(w.sum(), 1.0))
    return total


def _at(student, teacher, w):
    return float(
        L.attention_transfer_loss(
            tuple(jnp.asarray(s) for s in student), tuple(jnp.asarray(t) for t in teacher), jnp.asarray(w)
        )
    )


def test_attention_transfer_loss_matches_numpy():
    out = _at(STUDENT, TEACHER, WEIGHTS)
    np.testing.assert_allclose(out, _np_at_loss(STUDENT, TEACHER, WEIGHTS), rtol=1e-5)
    assert out > 0
    assert _at(STUDENT, STUDENT, WEIGHTS) == pytest.approx(0.0, abs=1e-12)


def test_attention_transfer_loss_ignores_zero_weight_rows():
    base = _at(STUDENT, TEACHER, WEIGHTS)
    zero_rows = WEIGHTS == 0
    rng = np.random.default_rng(5)
    perturbed_s = tuple(
        np.where(_rows(zero_rows, s), rng.normal(size=s.shape) * 10, s).astype(np.float32) for s in STUDENT
    )
    perturbed_t = tuple(
        np.where(_rows(zero_rows, t), rng.normal(size=t.shape) * 10, t).astype(np.float32) for t in TEACHER
    )
    assert _at(perturbed_s, perturbed_t, WEIGHTS) == pytest.approx(base, rel=1e-6)
    # ... while perturbing a weighted row does change it (the check above can fail).
    one_row = ~zero_rows & (np.arange(B) == 0)
    changed = tuple(np.where(_rows(one_row, s), rng.normal(size=s.shape) * 10, s).astype(np.float32) for s in STUDENT)
    assert abs(_at(changed, TEACHER, WEIGHTS) - base) > 1e-4


def _rows(mask, a):
    return mask.reshape((-1,) + (1,) * (a.ndim - 1))


def test_attention_transfer_loss_layer_count_mismatch_raises():
    with pytest.raises(ValueError, match="activations"):
        L.attention_transfer_loss((jnp.asarray(CONV), jnp.asarray(DENSE)), (jnp.asarray(CONV),), jnp.asarray(WEIGHTS))
