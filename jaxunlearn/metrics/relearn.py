"""The anamnesis index (AIN): how fast a model relearns the forgotten data.

From a model, train on the FULL training set with Adam, one step at a time, evaluating the
forget-validation loss after each step, until it is <= (1 + alpha) x the original model's
forget-validation loss, or ``max_epochs`` epochs have passed. AIN = steps(model) /
steps(retrained model): near 1, the information is gone; near 0, it is still there.

The whole count is one ``lax.while_loop`` on the device (the reference evaluates from the
host after every step). A seed whose relearning diverges (its forget-validation loss turns
NaN/inf, which would stop the count as if the threshold were reached) gets NaN steps.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn.data.arrays import Task
from jaxunlearn.seeds import LoopPlan, SeedExecutor, to_host
from jaxunlearn.train.loop import Fit, FitConfig, epoch_batches, predict, supervised_loss
from jaxunlearn.train.losses import get_loss
from jaxunlearn.train.state import ModelFns, TrainState, new_optimizer_state


@dataclasses.dataclass(frozen=True)
class RelearnConfig:
    batch_size: int = 256
    loss: str = "l1"
    max_epochs: int = 10
    alpha: float = 0.05


class Relearn:
    """Pure single-seed functions for the AIN of one task.

    Methods:
        forget_val_loss(state, task) -> scalar: the loss on the validation forget rows.
        steps(key, state, threshold, lr, task) -> (int32 steps, final forget-val loss).
        start / epoch: the same count, one epoch per call (see ``RelearnRunner``).
    """

    def __init__(self, model: ModelFns, task: Task, cfg: RelearnConfig, plan: LoopPlan):
        self.model, self.cfg, self.plan = model, cfg, plan
        fit_cfg = FitConfig(epochs=cfg.max_epochs, batch_size=cfg.batch_size, rows="all", loss=cfg.loss)
        self.fit = Fit(model, fit_cfg, supervised_loss(model, cfg.loss), task, plan)
        self.forget_val_count = int(task.val.host_indices("forget").size)  # which rows: read at run time
        if self.forget_val_count == 0:
            raise ValueError("the validation split has no forget rows: the anamnesis index cannot be measured")
        self.max_steps = cfg.max_epochs * self.fit.num_batches
        self.loss_fn = get_loss(cfg.loss)

    def forget_val_loss(self, state: TrainState, task: Task) -> jax.Array:
        rows = task.val.indices("forget", self.forget_val_count)
        pred = predict(self.model, state.params, state.batch_stats, task.val.x[rows], self.plan)
        return jnp.mean(self.loss_fn(pred, task.val.y[rows]))

    def steps(self, key: jax.Array, state: TrainState, threshold: jax.Array, lr: jax.Array, task: Task):
        """Optimizer steps until forget-val loss <= threshold (0 if already there), capped."""
        nb = self.fit.num_batches

        def cond(c):
            step, _, loss = c
            return (loss > threshold) & (step < self.max_steps)

        # Every epoch's batches and step keys, drawn once (not re-sorted at every step).
        idx, w, step_keys = jax.vmap(lambda e: self._epoch_inputs(key, e, task))(jnp.arange(self.cfg.max_epochs))

        def body(c):
            epoch, b = c[0] // nb, c[0] % nb
            return self._train_step(c, idx[epoch, b], w[epoch, b], step_keys[epoch, b], task)

        step, _, loss = jax.lax.while_loop(cond, body, self.start(state, lr, task))
        return step, loss

    def start(self, state: TrainState, lr: jax.Array, task: Task):
        """The relearning carry (steps taken, state with a fresh Adam, forget-val loss)."""
        state = new_optimizer_state(state, lr)
        return jnp.zeros((), jnp.int32), state, self.forget_val_loss(state, task)

    def epoch(self, key: jax.Array, carry, threshold: jax.Array, epoch: jax.Array, task: Task):
        """One epoch of relearning steps without a while loop (host-driven plans).

        A step's update is kept only while the loss is above ``threshold``; the keys and
        batches are those of ``steps``, so both count the same steps.
        """
        idx, w, step_keys = self._epoch_inputs(key, epoch, task)

        def body(c, inputs):
            # A select instead of lax.cond: XLA:CPU runs conv steps inside conditionals as
            # slowly as inside while loops (measured 1.3 s vs 0.08 s per step).
            active = c[2] > threshold
            idx_b, w_b, key_b = inputs
            stepped = self._train_step(c, idx_b, w_b, key_b, task)
            return jax.tree_util.tree_map(lambda new, old: jnp.where(active, new, old), stepped, c), None

        unroll = self.fit.num_batches if self.plan.unroll is True else 1
        carry, _ = jax.lax.scan(body, carry, (idx, w, step_keys), unroll=unroll)
        return carry

    def _train_step(self, carry, idx: jax.Array, w: jax.Array, key: jax.Array, task: Task):
        """One step on the full-training-set batch ``idx`` [B]; re-evaluates the forget-val loss."""
        step, state, _ = carry
        state, _ = self.fit.step(state, self.fit.gather(task, None, idx, w), key, {}, None)
        return step + 1, state, self.forget_val_loss(state, task)

    def _epoch_inputs(self, key: jax.Array, epoch: jax.Array, task: Task):
        """Batches [nb, B], weights [nb, B] and step keys [nb] of one relearning epoch."""
        k_perm, k_steps = jax.random.split(jax.random.fold_in(key, epoch))
        rows, count = self.fit.row_indices(task)
        idx, w = epoch_batches(k_perm, rows, self.cfg.batch_size, count)
        return idx, w, jax.random.split(k_steps, self.fit.num_batches)


class RelearnRunner:
    """Counts relearning steps over S seeds under a plan; compiled programs are reused.

    With ``plan.epochs_per_call`` set (host-driven plans, e.g. conv nets on XLA:CPU, where
    a while loop around a conv step is ~50x slower) epochs are called from the host until
    every seed has reached its threshold; otherwise one ``lax.while_loop`` program runs.
    """

    def __init__(self, relearn: Relearn, plan: LoopPlan):
        self.relearn, self.plan = relearn, plan
        self._whole = SeedExecutor(relearn.steps, plan, n_per_seed=4)

        def relearn_start(state, lr, task):  # a copy: the carry is donated, the states are the caller's
            return jax.tree_util.tree_map(jnp.copy, relearn.start(state, lr, task))

        def relearn_epoch(carry, key, threshold, epoch, task):  # the carry first and back first: donated
            return (relearn.epoch(key, carry, threshold, epoch, task),)

        self._start = SeedExecutor(relearn_start, plan, n_per_seed=2)
        self._epoch = SeedExecutor(relearn_epoch, plan, n_per_seed=3, donate=1)

    def __call__(self, keys, states, threshold, lr, task: Task) -> np.ndarray:
        """Returns the [S] step counts (float; NaN where relearning diverged)."""
        if self.plan.epochs_per_call is None:
            steps, loss = self._whole((keys, states, threshold, lr), (task,))
        else:
            carry = self._start((states, lr), (task,))
            for epoch in range(self.relearn.cfg.max_epochs):
                # on the host: a reduction over seeds split across devices would be a collective
                if not np.any(to_host(carry[2]) > to_host(threshold)):  # all done (NaN counts as done)
                    break
                (carry,) = self._epoch((carry, keys, threshold), (jnp.asarray(epoch, jnp.int32), task))
            steps, loss = carry[0], carry[2]
        return np.where(np.isfinite(to_host(loss)), to_host(steps).astype(np.float64), np.nan)


def anamnesis_index(steps: np.ndarray, retrain_steps: np.ndarray) -> np.ndarray:
    """steps / retrain_steps per seed; NaN where the retrained model needed 0 steps."""
    steps, retrain_steps = np.asarray(steps, np.float64), np.asarray(retrain_steps, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(retrain_steps > 0, steps / np.maximum(retrain_steps, 1), np.nan)
