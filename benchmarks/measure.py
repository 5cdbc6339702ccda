"""Measuring one training phase of a jaxunlearn pipeline over S seeds.

A measurement drives the library's own per-phase programs (``PipelineRunner.drivers``,
built on ``SeedExecutor``) one epoch per call under a seed strategy: the first call
compiles (timed separately with ``Stopwatch``), then ``repeats`` epochs are timed with
``block_until_ready`` and the median kept. Beside each time it records FLOPs per seed-epoch
(one optimizer step x steps per epoch, plus the validation pass; the matmul/conv count of
``flops_record``, which every backend gives alike and which counts scan bodies by their trip
counts, where XLA's count takes a loop body once), device memory, and quality
metrics of the resulting models (last epoch's training loss, test-retain and test-forget
MAE in standardised units, per seed).

Phases (``STAGES``): "train" (the original model: recipe on every row), "retrain" (recipe on
retain rows), "finetune", "gaussian", "proxy" and "blindspot" (the two phases of blindspot
unlearning; "blindspot-inloop" is the student with its proxy run on every batch rather
than cached, for comparison), "neggrad", "scrub-min" / "scrub-max" (SCRUB's passes
over the retain and the forget rows), and "ssd-importance" / "ssd-dampen" (SSD's two
one-shot phases: an "epoch" is the whole pass, timed again from the same start each
repeat; no training loss). States trained in one group (workload, dtype, seeds, strategy) feed the next
phases: "train" is the original of the unlearners, "proxy" (or "retrain", the same compiled
program on the same rows) is the blindspot proxy.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import FORGET_QUANTILE_RULE, WORKLOADS, Workload, summary_stats
from jaxunlearn import unlearn
from jaxunlearn.config import StudyConfig
from jaxunlearn.data.sources import RawData, build_task
from jaxunlearn.models import make_model
from jaxunlearn.runner import PipelineRunner, broadcast_hp
from jaxunlearn.seeds import auto_plan, tree_index
from jaxunlearn.timing import Stopwatch
from jaxunlearn.train.loop import predict
from jaxunlearn.train.state import ModelFns
from jaxunlearn.unlearn.base import OneShot
from jaxunlearn.unlearn.blindspot import make_blindspot

# phase -> (pipeline, index of the phase in it, where its paper epoch count is: a StudyConfig
# field, or (unlearner, settings field))
STAGES = {
    "train": ("original", 0, "train_epochs"),
    "retrain": ("retrain", 0, "train_epochs"),
    "finetune": ("finetune", 0, ("finetune", "epochs")),
    "gaussian": ("gaussian", 0, ("gaussian", "epochs")),
    "proxy": ("blindspot", 0, ("blindspot", "proxy_epochs")),
    "blindspot": ("blindspot", 1, ("blindspot", "epochs")),
    # The same student with the proxy run on every batch instead of cached once (A/B).
    "blindspot-inloop": ("blindspot-inloop", 1, ("blindspot", "epochs")),
    "neggrad": ("neggrad", 0, ("neggrad", "epochs")),
    # SCRUB's two passes: a min pass over the retain rows (from the original), then a max
    # pass over the forget rows (from this group's min-pass states).
    "scrub-min": ("scrub", 0, ("scrub", "epochs")),
    "scrub-max": ("scrub", 1, ("scrub", "max_epochs")),
    # SSD: one pass each (no epochs setting), the importances then the dampening.
    "ssd-importance": ("ssd", 0, None),
    "ssd-dampen": ("ssd", 1, None),
}
# phase -> the phase whose states its phase starts from (``earlier``), if any.
STARTS_FROM = {
    "blindspot": "proxy",
    "blindspot-inloop": "proxy",
    "scrub-max": "scrub-min",
    "ssd-dampen": "ssd-importance",
}


def factory(pipeline: str):
    """(model, task, cfg, plan) -> the pipeline of a registered stage, or the blindspot A/B."""
    if pipeline == "blindspot-inloop":
        return lambda model, task, cfg, plan: make_blindspot(
            model, task, cfg, plan, cfg.resolved_settings("blindspot"), proxy_cache=False
        )
    return unlearn.get(pipeline).build


__all__ = ["STAGES", "WORKLOADS", "Bench", "Workload", "random_task", "seed_keys", "synthetic_task"]


@functools.lru_cache(maxsize=4)
def synthetic_task(rows: int, feature_shape: tuple[int, ...], seed: int = 0):
    """``rows`` training rows plus rows/8 validation and test rows; y = x @ v / sqrt(d)."""
    rng = np.random.default_rng(seed)
    extra = max(rows // 8, 16)
    n = rows + 2 * extra
    x = rng.standard_normal((n, *feature_shape), dtype=np.float32)
    v = rng.standard_normal(int(np.prod(feature_shape))).astype(np.float32)
    y = x.reshape(n, -1) @ v / np.sqrt(v.size)
    cut1, cut2 = rows, rows + extra
    splits = {"train": (x[:cut1], y[:cut1]), "val": (x[cut1:cut2], y[cut1:cut2]), "test": (x[cut2:], y[cut2:])}
    return build_task(RawData(splits, FORGET_QUANTILE_RULE, f"synthetic {feature_shape}"))


# The seed-strategy probe's name for it (benchmarks/seed_strategies.py).
random_task = synthetic_task


def paper_epochs(cfg: StudyConfig, phase: str) -> int:
    """The phase's epoch count in a study with ``cfg`` (1 for a one-shot phase)."""
    field = STAGES[phase][2]
    if field is None:
        return 1
    if isinstance(field, tuple):
        stage, name = field
        return getattr(cfg.resolved_settings(stage), name)
    return getattr(cfg, field)


def seed_keys(seeds: int, stream: str, root: int = 0) -> jax.Array:
    """[S] keys; seed i's key does not depend on S (1-seed and 8-seed runs share seed 0)."""
    base = jax.random.fold_in(jax.random.key(root), sum(map(ord, stream)))
    return jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(seeds))


def dot_conv_flops(jaxpr: Any) -> float:
    """2 x multiply-adds of every matmul and convolution in a (closed) jaxpr, with scan
    bodies counted ``length`` times. XLA's cost analysis counts a loop body once, which
    undercounts recurrent models (``nn.RNN`` scans over time) by the sequence length."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            (lhs_contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += 2.0 * np.prod(eqn.outvars[0].aval.shape) * np.prod([lhs[d] for d in lhs_contract])
        elif name == "conv_general_dilated":
            rhs, spec = eqn.invars[1].aval.shape, eqn.params["dimension_numbers"].rhs_spec
            per_output = rhs[spec[1]] * np.prod([rhs[d] for d in spec[2:]])
            total += 2.0 * np.prod(eqn.outvars[0].aval.shape) * per_output
        times = eqn.params.get("length", 1) if name == "scan" else 1
        subs = [v for v in eqn.params.values() if hasattr(v, "eqns") or hasattr(getattr(v, "jaxpr", None), "eqns")]
        subs += [
            b
            for v in eqn.params.values()
            if isinstance(v, tuple)
            for b in v
            if hasattr(getattr(b, "jaxpr", None), "eqns")
        ]
        if name == "cond":
            total += max((dot_conv_flops(b) for b in eqn.params["branches"]), default=0.0)
            continue
        total += times * sum(dot_conv_flops(sub) for sub in subs)
    return float(total)


def _flops(cost: Any) -> float | None:
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    return float(cost["flops"]) if cost and "flops" in cost else None


def program_flops(fn, *args) -> tuple[float, float]:
    """FLOPs of one call ``fn(*args)``: (XLA's cost analysis of the lowered program, 0 where
    the backend gives none; the loop-aware matmul/conv count of its jaxpr).

    Neither uses the compiled program's cost analysis: on GPUs convolutions become cuDNN
    custom calls that it leaves out (on an H200 it gave 0.37 GFLOP for an AllCNN forward
    pass of 134-144 GFLOP). The lowered program's count is empty on GPUs too.
    """
    traced = jax.jit(fn).trace(*args)
    return _flops(traced.lower().cost_analysis()) or 0.0, dot_conv_flops(traced.jaxpr)


def flops_record(xla: float, loops: float, what: str) -> dict[str, Any]:
    """The count every backend gives alike: 2 x the multiply-adds of matmuls and
    convolutions (``dot_conv_flops``; padding taps and a strided convolution's input
    gradient counted densely, so ~23% above XLA's CPU count for AllCNN's step); XLA's count
    only where a program has no matmul or convolution at all (e.g. SSD's dampening)."""
    use_xla = loops <= 0 and xla > 0
    best = xla if use_xla else loops
    return {
        "flops_per_seed_epoch": best if best > 0 else None,
        "flops_xla_cost_analysis": xla,
        "flops_matmul_conv_loop_aware": loops,
        "flops_source": ("XLA cost analysis" if use_xla else "matmul/conv count with scan trip counts") + f" {what}",
    }


def device_memory() -> dict[str, Any]:
    """Process-wide device memory counters (``peak_bytes_in_use`` only grows)."""
    dev = jax.local_devices()[0]
    try:
        stats = dev.memory_stats()
    except Exception:  # noqa: BLE001 - backends without the counters raise or return None
        stats = None
    if not stats:
        return {
            "peak_bytes_in_use": None,
            "bytes_in_use": None,
            "memory_note": f"device.memory_stats() is unavailable on {dev.platform}",
        }
    return {
        "peak_bytes_in_use": stats.get("peak_bytes_in_use"),
        "bytes_in_use": stats.get("bytes_in_use"),
        "memory_note": "process-wide peak since start (monotone)",
    }


def program_bytes(executor, per_seed: tuple, shared: tuple) -> int | None:
    """Arguments + outputs + temporaries of the compiled program ``executor`` runs (XLA's
    memory analysis; the program is already compiled, so this hits the in-memory cache).
    """
    try:
        mem = executor.lower(per_seed, shared).compile().memory_analysis()
        return int(
            mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes - mem.alias_size_in_bytes
        )
    except Exception:  # noqa: BLE001 - optional detail; absent on some backends
        return None


class Bench:
    """Tasks, models, runners, FLOP counts and trained states, cached so that every program
    compiles once per (workload, dtype, pipeline, strategy) and prerequisites are reused."""

    def __init__(self, repeats: int = 2, log=print, plan_overrides: dict | None = None):
        self.repeats, self.log = repeats, log
        self.plan_overrides = dict(plan_overrides or {})
        self._runners: dict = {}
        self._flops: dict = {}
        self._predict: dict = {}
        self._program_bytes_on = True
        self.states: dict = {}  # (workload, dtype, seeds, strategy) -> {phase: TrainState [S]}
        self.epoch_s: dict = {}  # same key -> {phase: median seconds per epoch (all seeds)}
        self.start_s: dict = {}  # same key -> {phase: seconds of the phase's start (all seeds)}

    def task(self, wl: Workload):
        return synthetic_task(wl.rows, wl.feature_shape)

    def config(self, wl: Workload, dtype: str) -> StudyConfig:
        return StudyConfig(model=wl.model, batch_size=wl.batch_size, dtype=dtype, loss="l1")

    def model(self, wl: Workload, dtype: str) -> ModelFns:
        return ModelFns(make_model(wl.model, dtype=jnp.dtype(dtype), **dict(wl.model_kwargs)), wl.feature_shape)

    def runner(self, wl: Workload, dtype: str, pipeline: str, strategy: str) -> PipelineRunner:
        key = (wl.name, dtype, pipeline, strategy)
        if key not in self._runners:
            model = self.model(wl, dtype)
            # one device: the suite measures a device's throughput (the seed mesh is tested elsewhere)
            plan = dataclasses.replace(
                auto_plan(model.family),
                **{"seed_strategy": strategy, "epochs_per_call": 1, "devices": 1, **self.plan_overrides},
            )
            self._runners[key] = PipelineRunner(
                factory(pipeline)(model, self.task(wl), self.config(wl, dtype), plan), plan
            )
        return self._runners[key]

    # -- prerequisites ------------------------------------------------------------------
    def original(self, wl, dtype, seeds, strategy) -> tuple[Any, str]:
        got = self.states.setdefault((wl.name, dtype, seeds, strategy), {})
        if "train" not in got:
            self.run_phase(wl, dtype, seeds, strategy, "train", repeats=0)
            return got["train"], "original trained here for 1 epoch, unmeasured"
        return got["train"], "original = this group's measured 'train' states"

    def proxy(self, wl, dtype, seeds, strategy) -> tuple[Any, str]:
        got = self.states.setdefault((wl.name, dtype, seeds, strategy), {})
        if "proxy" in got:
            return got["proxy"], "proxy = this group's measured 'proxy' states"
        if "retrain" in got:
            return got["retrain"], "proxy = this group's 'retrain' states (the proxy's program on the same rows)"
        original, _ = self.original(wl, dtype, seeds, strategy)
        return original, "proxy = original states (timing only: quality not comparable to the paper's blindspot)"

    def earlier_states(self, wl, dtype, seeds, strategy, phase: str) -> tuple[Any, str]:
        """The states ``phase`` left in this group, else the original's (timing only)."""
        got = self.states.setdefault((wl.name, dtype, seeds, strategy), {})
        if phase in got:
            return got[phase], f"starts from this group's measured '{phase}' states"
        original, _ = self.original(wl, dtype, seeds, strategy)
        return original, f"starts from the original states (no '{phase}' in this group: timing only)"

    # -- one phase ----------------------------------------------------------------------
    def run_phase(
        self, wl: Workload, dtype: str, seeds: int, strategy: str, phase: str, repeats: int | None = None
    ) -> dict[str, Any]:
        """Runs ``phase`` for 1 + repeats epochs over ``seeds`` seeds; returns the record's fields."""
        repeats = self.repeats if repeats is None else repeats
        pipe_name, index, _ = STAGES[phase]
        group = (wl.name, dtype, seeds, strategy)
        runner = self.runner(wl, dtype, pipe_name, strategy)
        driver, task = runner.drivers[index], self.task(wl)
        notes = []
        original = None
        if runner.pipeline.needs_original:
            original, note = self.original(wl, dtype, seeds, strategy)
            notes.append(note)
        earlier = ()
        if STARTS_FROM.get(phase) == "proxy":  # the blindspot student: its proxy comes from this group
            proxy, note = self.proxy(wl, dtype, seeds, strategy)
            earlier = (proxy,)
            notes.append(note)
        elif phase in STARTS_FROM:
            before, note = self.earlier_states(wl, dtype, seeds, strategy, STARTS_FROM[phase])
            earlier = (before,)
            notes.append(note)
        keys = seed_keys(seeds, runner.pipeline.name)  # variants of a pipeline (blindspot-inloop) share its keys
        hp = broadcast_hp(runner.pipeline.hp(), seeds)

        fit = driver.phase.fit
        one_shot = isinstance(fit, OneShot)  # its pass is repeated from the same start
        t0 = time.perf_counter()
        with Stopwatch() as sw:
            begun, aux = driver.begin((keys, original, hp, earlier, None), (task,))
            carry, hist = driver.epochs((begun, hp, aux, None), (jnp.zeros((1,), jnp.int32), task))
            jax.block_until_ready((carry, hist))
        first_call = time.perf_counter() - t0
        times = []
        for epoch in range(1, repeats + 1):
            ids = jnp.full((1,), 0 if one_shot else epoch, jnp.int32)
            t0 = time.perf_counter()
            carry, hist = driver.epochs((begun if one_shot else carry, hp, aux, None), (ids, task))
            jax.block_until_ready((carry, hist))
            times.append(time.perf_counter() - t0)
        # The phase's start (initial state, e.g. the blindspot proxy cache) once more, now compiled.
        t0 = time.perf_counter()
        jax.block_until_ready(driver.begin((keys, original, hp, earlier, None), (task,)))
        start_s = time.perf_counter() - t0
        state = fit.finish(carry)
        self.states.setdefault(group, {})[phase] = state
        if not times:
            return {}
        median = float(np.median(times))
        self.epoch_s.setdefault(group, {})[phase] = median
        self.start_s.setdefault(group, {})[phase] = start_s
        flops = self.epoch_flops(wl, dtype, phase, fit, begun["state"] if one_shot else carry.state, hp, aux)
        # A one-shot phase counts the rows of SSD's importance passes (all rows, then the forget rows).
        rows = task.train.size + int(task.train.host_indices("forget").size) if one_shot else fit.row_count
        out = {
            "pipeline": pipe_name,
            "phase_index": index,
            "plan": dataclasses.asdict(driver.plan),
            "input_shape": list(wl.feature_shape),
            "model_kwargs": dict(wl.model_kwargs),
            "full_size": wl.full_size,
            "rows_per_epoch": rows,
            "num_batches": None if one_shot else fit.steps_per_epoch,
            "validates": not one_shot and fit.cfg.validate_on is not None,
            "compile_s": sw.compile,
            "first_call_s": first_call,
            "start_s": start_s,
            "repeats": repeats,
            "epoch_s_median": median,
            "epoch_s_all": times,
            "per_seed_epoch_s": median / seeds,
            "samples_per_s": rows * seeds / median,
            "seed_epochs_per_s": seeds / median,
            **flops,
            "achieved_tflops": None
            if flops["flops_per_seed_epoch"] is None
            else flops["flops_per_seed_epoch"] * seeds / median / 1e12,
            "program_bytes": self.program_bytes(
                driver.epochs, (begun if one_shot else carry, hp, aux, None), (jnp.zeros((1,), jnp.int32), task)
            ),
            **device_memory(),
            "paper_epochs": paper_epochs(self.config(wl, dtype), phase),
            "quality_epochs": 1 if one_shot else 1 + repeats,
            # SSD's importances are not a model: nothing to measure the quality of.
            "quality": self.quality(wl, dtype, state, hist) if hasattr(state, "params") else {},
            "notes": notes,
        }
        out["phase_s_projected"] = start_s + out["paper_epochs"] * median
        return out

    def program_bytes(self, executor, per_seed, shared) -> int | None:
        """``program_bytes`` while it stays a cache hit; a call over 2 s means it recompiled
        (it must not eat the GPU run's budget), so it is switched off from then on."""
        if not self._program_bytes_on:
            return None
        t0 = time.perf_counter()
        out = program_bytes(executor, per_seed, shared)
        if time.perf_counter() - t0 > 2.0:
            self._program_bytes_on = False
            self.log(f"  (memory analysis took {time.perf_counter() - t0:.1f} s: a recompile; switched off)")
        return out

    # -- FLOPs and quality --------------------------------------------------------------
    def epoch_flops(self, wl, dtype, phase, fit, stacked_state, hp, aux) -> dict[str, Any]:
        key = (wl.name, dtype, phase)
        if key not in self._flops:
            try:
                self._flops[key] = self._count_flops(
                    wl,
                    fit,
                    tree_index(stacked_state, 0),
                    tree_index(hp, 0),
                    None if aux is None else tree_index(aux, 0),
                )
            except Exception as err:  # noqa: BLE001 - a missing count must not lose the timing
                self.log(f"  (no FLOP count for {key}: {type(err).__name__}: {err})")
                self._flops[key] = {"flops_per_seed_epoch": None, "flops_source": f"failed: {err}"[:200]}
        return self._flops[key]

    def _count_flops(self, wl, fit, state, hp, aux) -> dict[str, Any]:
        """FLOPs of one seed's epoch: one optimizer step x steps per epoch, plus the
        validation forward passes, by ``flops_record``'s rule."""
        task = self.task(wl)

        def count(fn, *args):
            return program_flops(fn, *args)

        if isinstance(fit, OneShot):  # the whole pass at once
            xla, loops = count(
                lambda s, hp, aux, task: fit.run(jax.random.key(0), s, task, hp, aux), state, hp, aux, task
            )
            return flops_record(xla, loops, "of the whole one-shot pass")
        b = fit.cfg.batch_size
        idx, w = jnp.asarray(task.train.host_indices(fit.cfg.rows)[:b]), jnp.ones((b,), jnp.float32)

        def one_step(state, idx, w, key, hp, aux, task):
            return fit.step(state, fit.gather(task, aux, idx, w), key, hp, aux)

        xla, loops = count(one_step, state, idx, w, jax.random.key(0), hp, aux, task)
        xla, loops = xla * fit.steps_per_epoch, loops * fit.steps_per_epoch
        if fit.cfg.validate_on is not None:
            n_val = task.val.size
            chunk = min(fit.plan.eval_chunk, n_val)
            fx, fl = count(
                lambda p, s, x: fit.model.apply_eval(p, s, x)[0], state.params, state.batch_stats, task.val.x[:chunk]
            )
            chunks = -(-n_val // chunk)
            xla, loops = xla + fx * chunks, loops + fl * chunks
        return flops_record(xla, loops, "of one step x steps + validation forward")

    def quality(self, wl, dtype, state, hist) -> dict[str, Any]:
        """Per-seed last-epoch training loss and test MAE on retain / forget rows."""
        task = self.task(wl)
        key = (wl.name, dtype)
        if key not in self._predict:
            model = self.model(wl, dtype)
            plan = auto_plan(model.family)
            self._predict[key] = jax.jit(lambda p, s, x: predict(model, p, s, x, plan))
        forget = np.asarray(task.test.forget) > 0.5
        y = np.asarray(task.test.y)[:, 0]
        retain_mae, forget_mae = [], []
        for i in range(int(np.asarray(hist["diverged_at"]).shape[0])):
            s = tree_index(state, i)
            err = np.abs(np.asarray(self._predict[key](s.params, s.batch_stats, task.test.x))[:, 0] - y)
            retain_mae.append(float(err[~forget].mean()))
            forget_mae.append(float(err[forget].mean()))
        out = {"test_retain_mae": summary_stats(retain_mae), "test_forget_mae": summary_stats(forget_mae)}
        for name in ("train_loss", "val_loss"):  # a one-shot phase (SSD's dampening) has neither
            last = np.asarray(hist.get(name, [[np.nan]]))[:, -1]
            if np.all(np.isfinite(last)):
                out[name] = summary_stats([float(v) for v in last])
        return out
