"""Tests for the model zoo (jaxunlearn.models): the shared model contract.

XLA's CPU compile of threefry random bits is slow (~1-2 s per parameter shape
on a small CPU), so these tests draw init keys from the cheap ``unsafe_rbg``
PRNG and jit each model's init once; the models do not depend on the PRNG.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn.models import (
    MODELS,
    AllCNN,
    LSTMRegressor,
    ResNet18,
    make_model,
    model_family,
)
from jaxunlearn.models.lstm import LSTMLayer

B = 4
# Tiny configurations and input shapes per registered model.
CONFIGS = {
    "mlp": (dict(hidden=(8, 8)), (B, 3, 5)),
    "allcnn": (dict(width=4), (B, 8, 8, 3)),
    "resnet18": (dict(width=2), (B, 4, 4, 3)),  # small: its grad compile dominates
    "lstm": (dict(hidden=8), (B, 2, 5, 6)),
}
BN_MODELS = {"allcnn", "resnet18"}
NAMES = sorted(MODELS)


def _key(seed):
    return jax.random.key(seed, impl="unsafe_rbg")


def _input(shape, seed=1):
    # numpy, not jax.random: every new threefry shape would cost a compile.
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


@pytest.fixture(autouse=True)
def _strict_rank_promotion():
    old = jax.config.jax_numpy_rank_promotion
    jax.config.update("jax_numpy_rank_promotion", "raise")
    yield
    jax.config.update("jax_numpy_rank_promotion", old)


class Setup:
    """A model, its input, a jitted init/eval/train and one set of variables."""

    def __init__(self, name):
        kwargs, shape = CONFIGS[name]
        self.name = name
        self.model = make_model(name, **kwargs)
        self.x = _input(shape)
        self.init = jax.jit(self.model.init)
        self.eval = jax.jit(self.model.apply)
        self.train = jax.jit(functools.partial(self.model.apply, train=True, mutable=["batch_stats"]))
        with jax.numpy_rank_promotion("raise"):
            self.variables = self.init(_key(0), self.x)


@functools.cache
def _setup(name):
    return Setup(name)


@pytest.fixture(params=NAMES)
def setup(request):
    return _setup(request.param)


def test_registry_and_families():
    assert set(MODELS) == {"mlp", "allcnn", "resnet18", "lstm"}
    assert model_family("mlp") == "dense"
    assert model_family("allcnn") == "conv"
    assert model_family("resnet18") == "conv"
    assert model_family("lstm") == "recurrent"
    for cls in MODELS.values():
        assert cls.family in {"conv", "dense", "recurrent"}


def test_init_and_output_contract(setup):
    v = setup.variables
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(v))
    assert ("batch_stats" in v) == (setup.name in BN_MODELS)
    pred, feats = setup.eval(v, setup.x)
    assert pred.shape == (B, 1) and pred.dtype == jnp.float32
    assert np.all(np.isfinite(pred))
    assert isinstance(feats, tuple) and len(feats) > 0
    for f in feats:
        assert f.ndim >= 2 and f.shape[0] == B


def test_default_prng_init_shapes(setup):
    # Shape-only trace with the default (threefry) key: no compile.
    abstract = jax.eval_shape(setup.model.init, jax.random.key(0), setup.x)
    assert jax.tree.map(lambda a: (a.shape, a.dtype), abstract) == jax.tree.map(
        lambda a: (a.shape, a.dtype), setup.variables
    )


def test_train_mode(setup):
    v, x = setup.variables, setup.x
    if setup.name in BN_MODELS:
        (pred, _), upd = setup.train(v, x)
        assert set(upd) == {"batch_stats"}
        old, new = jax.tree.leaves(v["batch_stats"]), jax.tree.leaves(upd["batch_stats"])
        assert len(old) == len(new) > 0
        assert all(not np.allclose(a, b) for a, b in zip(old, new, strict=True))
    else:
        pred, _ = setup.model.apply(v, x, train=True)
        np.testing.assert_allclose(pred, setup.eval(v, x)[0], rtol=1e-6)
    assert pred.shape == (B, 1) and pred.dtype == jnp.float32


def test_eval_is_per_sample(setup):
    v, x = setup.variables, setup.x
    if setup.name in BN_MODELS:  # non-trivial running statistics
        _, upd = setup.train(v, 3.0 * x + 1.0)
        v = {**v, **upd}
    full, _ = setup.eval(v, x)
    perm = jnp.array([2, 0, 3, 1])
    permuted, _ = setup.eval(v, x[perm])
    np.testing.assert_allclose(permuted, full[perm], rtol=1e-5, atol=1e-6)
    others = x.at[1:].set(_input(x[1:].shape, seed=5))
    changed, _ = setup.eval(v, others)
    np.testing.assert_allclose(changed[0], full[0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(changed[1:], full[1:])


def test_jit_matches_eager(setup):
    eager, feats = setup.model.apply(setup.variables, setup.x)
    jitted, jfeats = setup.eval(setup.variables, setup.x)
    np.testing.assert_allclose(jitted, eager, rtol=1e-5, atol=1e-6)
    assert len(jfeats) == len(feats)


def test_vmap_over_parameter_sets(setup):
    v0, x = setup.variables, setup.x
    v1 = setup.init(_key(7), x)
    stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), v0, v1)
    preds, feats = jax.jit(jax.vmap(setup.model.apply, in_axes=(0, None)))(stacked, x)
    assert preds.shape == (2, B, 1) and preds.dtype == jnp.float32
    assert all(f.shape[:2] == (2, B) for f in feats)
    np.testing.assert_allclose(preds[0], setup.eval(v0, x)[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(preds[1], setup.eval(v1, x)[0], rtol=1e-4, atol=1e-5)
    assert not np.allclose(preds[0], preds[1])


def test_bfloat16_compute(setup):
    bf = setup.model.clone(dtype=jnp.bfloat16)
    abstract = jax.eval_shape(bf.init, jax.random.key(0), setup.x)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(abstract))
    pred, feats = jax.jit(bf.apply)(setup.variables, setup.x)
    assert pred.shape == (B, 1) and pred.dtype == jnp.float32
    assert np.all(np.isfinite(pred))
    assert all(np.all(np.isfinite(np.asarray(f, np.float32))) for f in feats)
    ref, _ = setup.eval(setup.variables, setup.x)
    np.testing.assert_allclose(pred, ref, rtol=0.1, atol=0.1)


def test_gradients_finite_and_nonzero(setup):
    v, x = setup.variables, setup.x
    bn = setup.name in BN_MODELS

    def loss(params):
        full = {**v, "params": params}
        if bn:
            (pred, _), _ = setup.model.apply(full, x, train=True, mutable=["batch_stats"])
        else:
            pred, _ = setup.model.apply(full, x)
        return jnp.mean((pred - 1.0) ** 2)

    grads = jax.jit(jax.grad(loss))(v["params"])
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        assert np.all(np.isfinite(g)), path
        assert np.any(g != 0), path


def test_unknown_model_name():
    with pytest.raises(ValueError, match=r"nope.*mlp"):
        make_model("nope")
    with pytest.raises(ValueError, match="nope"):
        model_family("nope")


def test_bad_keyword():
    with pytest.raises(ValueError, match=r"allcnn.*depth.*width"):
        make_model("allcnn", depth=3)
    with pytest.raises(ValueError, match=r"lstm.*hidden"):
        make_model("lstm", width=3)
    with pytest.raises(ValueError, match=r"mlp.*name"):
        make_model("mlp", name="x")
    assert isinstance(make_model("resnet18", width=2), ResNet18)


def test_conv_feature_counts_and_shapes():
    x = jax.ShapeDtypeStruct((B, 8, 8, 3), jnp.float32)
    (_, feats), _ = jax.eval_shape(AllCNN(width=4).init_with_output, jax.random.key(0), x)
    expected = [(B, 8, 8, 4)] * 2 + [(B, 4, 4, 4)] + [(B, 4, 4, 8)] * 2 + [(B, 2, 2, 8)] * 3
    assert [f.shape for f in feats] == expected
    (_, feats), _ = jax.eval_shape(ResNet18(width=2).init_with_output, jax.random.key(0), x)
    expected = [(B, 8, 8, 2)] * 2 + [(B, 4, 4, 4)] * 2 + [(B, 2, 2, 8)] * 2 + [(B, 1, 1, 16)] * 2
    assert [f.shape for f in feats] == expected


def test_lstm_single_and_pair():
    m = LSTMRegressor(hidden=8)
    single = _input((B, 5, 6))
    abstract = jax.eval_shape(m.init_with_output, jax.random.key(0), single)
    (pred, feats), _ = abstract
    assert pred.shape == (B, 1) and pred.dtype == jnp.float32
    assert len(feats) == 1 and feats[0].shape == (B, 5, 8)

    st = _setup("lstm")  # hidden=8, pair input [B, 2, 5, 6]
    pair, v, apply = st.x, st.variables, st.eval
    pred, feats = apply(v, pair)
    assert pred.shape == (B, 1) and len(feats) == 1 and feats[0].shape == (B, 10, 8)
    # One shared LSTM: the first T outputs are sentence 1's, the last T sentence 2's.
    _, feats2 = apply(v, pair.at[:, 1].add(1.0))
    np.testing.assert_allclose(feats2[0][:, :5], feats[0][:, :5], rtol=1e-6)
    assert not np.allclose(feats2[0][:, 5:], feats[0][:, 5:])
    _, swapped = apply(v, pair[:, ::-1])
    np.testing.assert_allclose(swapped[0][:, :5], feats[0][:, 5:], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(B, 6), (B, 2, 3, 5, 6), (B, 3, 5, 6)])
def test_lstm_bad_rank(shape):
    with pytest.raises(ValueError, match="LSTMRegressor"):
        jax.eval_shape(LSTMRegressor(hidden=8).init, jax.random.key(0), jnp.zeros(shape))


class _FlaxLSTM(nn.Module):
    """Reference: flax's own LSTM, under the parameter names LSTMLayer uses."""

    hidden: int
    dtype: object = jnp.float32

    @nn.compact
    def __call__(self, x):
        return nn.RNN(nn.OptimizedLSTMCell(self.hidden, dtype=self.dtype, name="lstm_cell"))(x.astype(self.dtype))


class _Layer(nn.Module):
    hidden: int
    dtype: object = jnp.float32
    hoist_input: bool = True
    unroll: int = 16

    @nn.compact
    def __call__(self, x):
        return LSTMLayer(
            self.hidden, dtype=self.dtype, hoist_input=self.hoist_input, unroll=self.unroll, name="lstm_cell"
        )(x)


@pytest.mark.parametrize("hoist_input,unroll", [(True, 1), (True, 3), (True, 16), (False, 1), (False, 16)])
def test_lstm_layer_equals_flax_lstm(hoist_input, unroll):
    x = _input((6, 7, 5))
    ref, mine = _FlaxLSTM(8), _Layer(8, hoist_input=hoist_input, unroll=unroll)
    variables = ref.init(_key(0), x)
    # Same parameter tree; the same input kernels; orthogonal recurrent kernels (drawn differently).
    own = mine.init(_key(0), x)
    assert jax.tree_util.tree_structure(own) == jax.tree_util.tree_structure(variables)
    cell, own_cell = variables["params"]["lstm_cell"], own["params"]["lstm_cell"]
    for g in "ifgo":
        np.testing.assert_array_equal(own_cell[f"i{g}"]["kernel"], cell[f"i{g}"]["kernel"])
        kernel = np.asarray(own_cell[f"h{g}"]["kernel"])
        np.testing.assert_allclose(kernel.T @ kernel, np.eye(8), atol=1e-5)
    assert not np.allclose(own_cell["hi"]["kernel"], own_cell["hf"]["kernel"])
    np.testing.assert_allclose(mine.apply(variables, x), ref.apply(variables, x), atol=1e-6)

    def loss(module, params):
        return jnp.sum(jnp.sin(module.apply(params, x)))

    g_ref, g_mine = (
        jax.grad(functools.partial(loss, ref))(variables),
        jax.grad(functools.partial(loss, mine))(variables),
    )
    for a, b in zip(jax.tree_util.tree_leaves(g_ref), jax.tree_util.tree_leaves(g_mine), strict=True):
        np.testing.assert_allclose(b, a, atol=1e-5)


def test_lstm_layer_bfloat16_close_to_flax_bfloat16():
    x = _input((6, 7, 5))
    variables = _FlaxLSTM(8).init(_key(0), x)
    ref = _FlaxLSTM(8, dtype=jnp.bfloat16).apply(variables, x)
    out = _Layer(8, dtype=jnp.bfloat16).apply(variables, x)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, ref, atol=2e-2)


def test_lstm_orthogonal_init_is_lapack_free_and_matches_lapack_qr():
    """The recurrent kernels' QR runs in XLA's own operations, not LAPACK (whose OpenBLAS
    kernel is picked per CPU), and gives LAPACK's Q (signs fixed by R) to float32 rounding."""
    from jaxunlearn.models.lstm import orthogonal_blocks

    key = _key(3)
    lowered = jax.jit(orthogonal_blocks, static_argnums=(1, 2)).lower(key, 3, 32).as_text()
    assert "lapack" not in lowered.lower() and "custom_call" not in lowered
    q = np.asarray(orthogonal_blocks(key, 3, 32))
    np.testing.assert_allclose(np.einsum("bij,bik->bjk", q, q), np.broadcast_to(np.eye(32), (3, 32, 32)), atol=2e-6)
    q_ref, r_ref = jnp.linalg.qr(jax.random.normal(key, (3, 32, 32), jnp.float32))
    q_ref = q_ref * jnp.sign(jnp.diagonal(r_ref, axis1=-2, axis2=-1))[..., None, :]
    np.testing.assert_allclose(q, q_ref, atol=2e-6)
    # a deficient matrix (zero columns) still gives finite, orthogonal output
    from jaxunlearn.models.lstm import householder_q

    z, _ = householder_q(jnp.zeros((4, 4)))
    np.testing.assert_allclose(np.asarray(z) @ np.asarray(z).T, np.eye(4), atol=1e-6)


@pytest.mark.parametrize("name", sorted(BN_MODELS))
def test_padding_rows_stay_out_of_batchnorm(name):
    """An epoch's last batch is padded with zero-weight copies of a row. Through
    ``ModelFns.apply_train`` the padded batch must give the real rows the same outputs,
    gradients and new running statistics as the unpadded batch (the reference's smaller
    last batch); counting the padding in the statistics would change all three."""
    from jaxunlearn.train.losses import masked_mean
    from jaxunlearn.train.state import ModelFns

    setup = _setup(name)
    fns = ModelFns(setup.model, setup.x.shape[1:])
    x, y = setup.x, jnp.arange(B, dtype=jnp.float32)[:, None]
    pad = 3
    x_pad = jnp.concatenate([x, jnp.repeat(x[:1], pad, axis=0)])
    y_pad = jnp.concatenate([y, jnp.repeat(y[:1], pad, axis=0)])
    w_pad = jnp.concatenate([jnp.ones((B,)), jnp.zeros((pad,))])
    params, stats = setup.variables["params"], setup.variables["batch_stats"]

    @jax.jit
    def loss_and_grad(x, y, w):
        def loss(p):
            pred, _, new_stats = fns.apply_train(p, stats, x, w > 0)
            return masked_mean(jnp.abs(pred - y), w), (pred, new_stats)

        return jax.value_and_grad(loss, has_aux=True)(params)

    (ref_loss, (ref_pred, ref_stats)), ref_grad = loss_and_grad(x, y, jnp.ones((B,)))
    (loss, (pred, new_stats)), grad = loss_and_grad(x_pad, y_pad, w_pad)
    close = functools.partial(np.testing.assert_allclose, rtol=2e-5, atol=2e-6)
    close(loss, ref_loss)
    close(pred[:B], ref_pred)
    jax.tree.map(close, new_stats, ref_stats)
    jax.tree.map(close, grad, ref_grad)
    # The same padded batch with the padding counted (all weights > 0 for BatchNorm) differs.
    (_, (counted_pred, counted_stats)), _ = loss_and_grad(x_pad, y_pad, jnp.where(w_pad > 0, 1.0, 1e-9))
    assert not np.allclose(counted_pred[:B], ref_pred, rtol=1e-3, atol=1e-4)
    assert not all(
        np.allclose(a, b, rtol=1e-3)
        for a, b in zip(jax.tree.leaves(counted_stats), jax.tree.leaves(ref_stats), strict=True)
    )
