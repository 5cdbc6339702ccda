"""The anamnesis-index step count: the while-loop and the host-driven epoch paths agree."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn.metrics.relearn import Relearn, RelearnConfig, RelearnRunner
from jaxunlearn.seeds import LoopPlan
from jaxunlearn.study import seed_keys
from tests.helpers import tiny_model, tiny_task, train_original

# Its tests share module-scoped fixtures: one worker runs them all (make test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("relearn")


@pytest.fixture(scope="module")
def trained():
    task = tiny_task()
    model = tiny_model(task)
    plan = LoopPlan("map")
    original = train_original(model, task, plan)
    fresh = jax.vmap(lambda k: model.fresh_state(k, 0.01))(seed_keys(0, 3, "retrain"))
    return task, model, original.state, fresh


def count(task, model, states, threshold, plan, max_epochs=3):
    relearn = Relearn(model, task, RelearnConfig(batch_size=32, max_epochs=max_epochs), plan)
    lr = jnp.full((3,), 0.01)
    return RelearnRunner(relearn, plan)(seed_keys(0, 3, "relearn"), states, threshold, lr, task), relearn


def test_host_driven_epochs_count_the_same_steps_as_the_while_loop(trained):
    task, model, original, fresh = trained
    whole_plan, host_plan = LoopPlan("map"), LoopPlan("map", epochs_per_call=1)
    relearn = Relearn(model, task, RelearnConfig(batch_size=32, max_epochs=3), whole_plan)
    threshold = 1.05 * jax.vmap(lambda s: relearn.forget_val_loss(s, task))(original)
    steps_whole, _ = count(task, model, fresh, threshold, whole_plan)
    steps_host, _ = count(task, model, fresh, threshold, host_plan)
    np.testing.assert_array_equal(steps_whole, steps_host)
    assert np.all(steps_whole > 0)


def test_zero_steps_when_already_below_and_cap_when_unreachable(trained):
    task, model, original, fresh = trained
    for plan in (LoopPlan("map"), LoopPlan("host", epochs_per_call=1)):
        steps, relearn = count(task, model, original, jnp.full((3,), jnp.inf), plan)
        np.testing.assert_array_equal(steps, 0)
        steps, relearn = count(task, model, fresh, jnp.full((3,), -1.0), plan, max_epochs=2)
        np.testing.assert_array_equal(steps, relearn.max_steps)


def test_no_forget_rows_in_validation_is_rejected(trained):
    task, model, _, _ = trained
    no_forget = task.replace(val=task.val.replace(forget=jnp.zeros_like(task.val.forget)))
    with pytest.raises(ValueError, match="no forget rows"):
        Relearn(model, no_forget, RelearnConfig(batch_size=32), LoopPlan())


def test_diverged_relearning_counts_nan_not_a_threshold_hit(trained):
    task, model, _original, fresh = trained
    threshold = jnp.full((3,), 1e-9)  # unreachable: only divergence can stop the count early
    for plan in (LoopPlan("map"), LoopPlan("host", epochs_per_call=1)):
        relearn = Relearn(model, task, RelearnConfig(batch_size=32, max_epochs=2), plan)
        lr = jnp.asarray([0.01, 1e35, 0.01])  # seed 1's Adam steps overflow the parameters
        steps = RelearnRunner(relearn, plan)(seed_keys(0, 3, "relearn"), fresh, threshold, lr, task)
        assert np.isnan(steps[1]), steps
        np.testing.assert_array_equal(steps[[0, 2]], relearn.max_steps)
