"""The benchmark suite's CPU smoke test (its --quick mode end to end), the summary's target
logic on hand-made records, the time budget, and the PyTorch reference (run where torch
is importable; elsewhere it must record an honest "skipped")."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest

from benchmarks.common import ID_FIELDS, MEASUREMENT_FIELDS, SCHEMA, read_records
from benchmarks.suite import OPTIONAL_TAIL, gpu_matrix, main, quick_matrix
from benchmarks.summary import render_summary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, timeout=300):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, *args], check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _finite(x):
    return isinstance(x, (int, float)) and math.isfinite(x)


@pytest.mark.heavy(41)
def test_quick_suite_writes_complete_records(tmp_path):
    out, md = tmp_path / "bench.jsonl", tmp_path / "bench.md"
    assert main(["run", "--quick", "--out", str(out), "--summary", str(md)]) == 0
    records = read_records([out])
    expected = sum(len(item.phases) for item in quick_matrix())
    assert len(records) == expected
    profiles = [r for r in records if r["kind"] == "profile"]
    assert len(profiles) == 1, [r.get("error") for r in records if r["kind"] == "error"]
    parts = profiles[0]["components"]
    assert set(parts) == {"forward_eval", "forward_train", "grad", "step", "scan_step"}
    assert all(c["s"] > 0 and c["flops"] > 0 for c in parts.values())
    # The parts nest: a gradient costs more FLOPs than a forward pass, a step at least a gradient.
    assert parts["forward_train"]["flops"] < parts["grad"]["flops"] <= parts["step"]["flops"]
    records = [r for r in records if r["kind"] != "profile"]
    for rec in records:
        assert rec["kind"] == "measurement", rec.get("error")
        missing = [f for f in ID_FIELDS + MEASUREMENT_FIELDS if f not in rec]
        assert not missing, (rec["workload"], rec["phase"], missing)
        assert rec["schema"] == SCHEMA and rec["framework"] == "jax" and rec["versions"]["jax"]
        assert rec["compile_s"] >= 0 and rec["first_call_s"] > 0
        assert rec["epoch_s_median"] > 0 and all(t > 0 for t in rec["epoch_s_all"])
        assert rec["samples_per_s"] > 0 and rec["flops_per_seed_epoch"] > 0 and rec["achieved_tflops"] > 0
        assert rec["peak_bytes_in_use"] is None and "unavailable" in rec["memory_note"]  # CPU
        # SSD's importances are not a model (no quality); its dampening has no training loss.
        names = {"ssd-importance": (), "ssd-dampen": ("test_retain_mae", "test_forget_mae")}.get(
            rec["phase"], ("train_loss", "test_retain_mae", "test_forget_mae")
        )
        assert set(rec["quality"]) >= set(names)
        for name in names:
            stats = rec["quality"][name]
            assert len(stats["per_seed"]) == rec["seeds"]
            assert all(_finite(v) for v in stats["per_seed"]) and _finite(stats["std"])
    seen = {(r["phase"], r["strategy"], r["dtype"]) for r in records}
    assert {p for p, _, _ in seen} >= {
        "train",
        "retrain",
        "finetune",
        "gaussian",
        "blindspot",
        "neggrad",
        "scrub-min",
        "scrub-max",
        "ssd-importance",
        "ssd-dampen",
    }
    assert {s for _, s, _ in seen} == {"vmap", "map", "host"} and {d for _, _, d in seen} == {"float32", "bfloat16"}
    ratios = [
        r["ratio_vs_retrain"]
        for r in records
        if r["phase"] in ("finetune", "gaussian", "blindspot", "neggrad", "scrub-max", "ssd-dampen") and r["seeds"] == 1
    ]
    assert len(ratios) == 6 and all(_finite(v) and v > 0 for v in ratios)
    for second, first in (("scrub-max", "scrub-min"), ("ssd-dampen", "ssd-importance")):
        rec = next(r for r in records if r["phase"] == second)
        assert f"starts from this group's measured '{first}' states" in rec["notes"]
    # SSD's importances: one pass over all rows and the forget rows, costing more than its dampening.
    importance, dampening = (next(r for r in records if r["phase"] == p) for p in ("ssd-importance", "ssd-dampen"))
    assert importance["paper_epochs"] == 1 and importance["num_batches"] is None
    assert importance["flops_per_seed_epoch"] > dampening["flops_per_seed_epoch"]
    # The cached-proxy student and the per-batch one see the same batches and learn the same.
    cached, inloop = (
        next(r for r in records if r["phase"] == p and r["seeds"] == 1) for p in ("blindspot", "blindspot-inloop")
    )
    assert math.isclose(cached["quality"]["train_loss"]["mean"], inloop["quality"]["train_loss"]["mean"], rel_tol=1e-4)
    assert cached["flops_per_seed_epoch"] < inloop["flops_per_seed_epoch"] and cached["start_s"] > 0
    text = md.read_text()
    assert "## Targets" in text and "not measured" in text and "mlp-quick" in text
    assert "## One training step taken apart" in text and "| mlp-quick | float32 | cpu | scan_step |" in text


def test_budget_records_skips_instead_of_running(tmp_path):
    out = tmp_path / "b.jsonl"
    main(["run", "--quick", "--workloads", "mlp-quick", "--budget-s", "0", "--out", str(out)])
    records = read_records([out])
    assert records and all(r["kind"] == "skipped" and "budget" in r["reason"] for r in records)


def test_gpu_matrix_is_prioritised_and_fits_the_budget():
    items = gpu_matrix()
    required = items[: len(items) - len(OPTIONAL_TAIL)]
    assert tuple(items[len(required) :]) == OPTIONAL_TAIL
    # ~25 s of PyTorch reference + the required items end before gpu_suite.sh's hard limit
    # (budget 460 s + 10 s); past the soft budget, remaining items are recorded as skipped.
    assert 25 + sum(i.est_s for i in required) <= 460 + 10
    assert any(i.phases == ("profile",) and i.dtype == "bfloat16" for i in required)
    assert items[0].workload == "allcnn" and items[0].seeds == 1
    for dtype in ("float32", "bfloat16"):
        for strategy in ("vmap", "map", "host"):
            phases = {
                p
                for i in required
                if i.workload == "allcnn" and i.seeds == 8 and i.strategy == strategy and i.dtype == dtype
                for p in i.phases
            }
            assert {"train", "blindspot"} <= phases, (strategy, dtype)
    for wl in ("lstm", "mlp"):
        assert {(i.seeds, i.strategy) for i in items if i.workload == wl and i.dtype == "float32"} >= {
            (1, "map"),
            (8, "vmap"),
            (8, "map"),
            (32, "vmap"),
            (32, "map"),
        }


def _rec(workload, phase, seeds, strategy, dtype, epoch_s, loss=(1.0, 0.1)):
    q = {"mean": loss[0], "std": loss[1], "per_seed": [loss[0]] * seeds}
    return {
        "schema": SCHEMA,
        "kind": "measurement",
        "framework": "jax",
        "device": "NVIDIA H200",
        "backend": "gpu",
        "full_size": True,
        "workload": workload,
        "model": workload,
        "phase": phase,
        "seeds": seeds,
        "strategy": strategy,
        "dtype": dtype,
        "epoch_s_median": epoch_s,
        "per_seed_epoch_s": epoch_s / seeds,
        "seed_epochs_per_s": seeds / epoch_s,
        "samples_per_s": 1.0,
        "compile_s": 1.0,
        "achieved_tflops": 1.0,
        "quality": {"train_loss": q, "test_forget_mae": q, "test_retain_mae": q},
    }


def _status(text, target):
    line = next(ln for ln in text.splitlines() if ln.startswith(f"| {target}"))
    return line.split("|")[2].strip().strip("*")


def test_summary_marks_targets():
    recs = [
        _rec("allcnn", "blindspot", 1, "map", "float32", 0.07),
        _rec("allcnn", "train", 1, "map", "float32", 0.07),
        _rec("allcnn", "blindspot", 8, "map", "float32", 0.55),
        _rec("allcnn", "train", 8, "map", "float32", 0.70),
        _rec("lstm", "train", 1, "map", "float32", 0.04),
        _rec("lstm", "train", 32, "vmap", "float32", 0.08),
        _rec("mlp", "train", 1, "map", "float32", 0.003),
        _rec("mlp", "train", 32, "vmap", "float32", 0.0045),
        _rec("allcnn", "train", 8, "map", "bfloat16", 0.56, loss=(1.05, 0.1)),
        _rec("allcnn", "blindspot", 8, "map", "bfloat16", 0.30, loss=(1.5, 0.1)),
        {
            "schema": SCHEMA,
            "kind": "skipped",
            "framework": "jax",
            "workload": "resnet18",
            "phase": "blindspot",
            "dtype": "float32",
            "seeds": 1,
            "strategy": "map",
            "reason": "time budget",
        },
    ]
    text = render_summary(recs)
    assert _status(text, "AllCNN blindspot epoch") == "met"
    assert _status(text, "AllCNN training epoch") == "not met"  # 0.07 > 0.06
    assert _status(text, "AllCNN, 8 seeds") == "not met"  # train: 0.0875 vs 0.07 per seed
    assert _status(text, "LSTM, 32 seeds") == "met"  # 16x
    assert _status(text, "MLP, 32 seeds") == "met"  # 21.3x
    assert _status(text, "bf16 keeps") == "not met"  # blindspot loss 1.5 vs 1.0 +- 0.1
    assert "time budget" in text
    assert _status(text, "'auto' seed strategy") == "not measured"  # one strategy per item
    cpu_only = render_summary([dict(r, backend="cpu", device="cpu") for r in recs[:2]])
    assert _status(cpu_only, "AllCNN blindspot epoch") == "not measured"


def test_summary_compares_like_with_like_and_drops_answered_skips():
    def rec(strategy, dtype, mean, epochs, seeds=8):
        r = _rec("allcnn", "train", seeds, strategy, dtype, 1.0, loss=(mean, 0.1))
        r["quality"] = {
            m: {"mean": mean, "std": 0.1, "per_seed": [mean + 0.01 * i for i in range(seeds)]} for m in ("train_loss",)
        }
        return dict(r, epoch_s_all=[1.0] * epochs)

    # bf16 trained 3 epochs against fp32's 2: not the same work, so no pair; the fp32 runs under
    # two strategies are the rounding control, here 0.3 apart: outside one std.
    recs = [rec("map", "float32", 1.0, 2), rec("vmap", "float32", 1.3, 2), rec("vmap", "bfloat16", 2.0, 3)]
    text = render_summary(recs)
    assert _status(text, "bf16 keeps") == "not measured"
    recs[2] = rec("vmap", "bfloat16", 1.35, 2)
    line = next(ln for ln in render_summary(recs).splitlines() if ln.startswith("| bf16 keeps"))
    assert "**met**" in line and "1 metric pairs over 1 items" in line
    assert "rounding alone): 1 of 1 metric pairs outside noise" in line and "paired t over seeds" in line
    # A skipped item that a later run measured is not listed as skipped; one never measured is.
    skip = {
        "schema": SCHEMA,
        "kind": "skipped",
        "framework": "jax",
        "device": "NVIDIA H200",
        "workload": "allcnn",
        "phase": "train",
        "dtype": "float32",
        "seeds": 8,
        "strategy": "map",
        "reason": "time budget",
    }
    text = render_summary([*recs, skip, dict(skip, strategy="host")])
    assert "1 skipped or failed items were measured by a later run" in text
    listed = text.split("## Skipped or failed")[1]
    assert "| host | skipped |" in listed and "| map | skipped |" not in listed


def test_flop_count_follows_the_formulas():
    import jax
    import jax.numpy as jnp

    from benchmarks.measure import dot_conv_flops, program_flops

    x, w = jnp.ones((8, 5)), jnp.ones((5, 3))
    assert dot_conv_flops(jax.make_jaxpr(jnp.dot)(x, w)) == 2 * 8 * 5 * 3
    img, kernel = jnp.ones((2, 3, 10, 10)), jnp.ones((4, 3, 3, 3))  # NCHW, OIHW, VALID: 8 x 8 outputs
    conv = jax.make_jaxpr(lambda a, b: jax.lax.conv(a, b, (1, 1), "VALID"))(img, kernel)
    assert dot_conv_flops(conv) == 2 * (2 * 4 * 8 * 8) * (3 * 3 * 3)

    # A scan body counts once per step; XLA's own count takes a loop body once.
    def scanned(c, xs):
        return jax.lax.scan(lambda h, xt: (jnp.tanh(h @ w @ w.T + xt), None), c, xs)[0]

    h0, xs = jnp.ones((8, 5)), jnp.ones((7, 8, 5))
    xla, loops = program_flops(scanned, h0, xs)
    assert loops == 7 * 2 * (2 * 8 * 5 * 3) and 0 < xla < loops


def test_recount_replaces_profile_flops_and_keeps_the_times():
    from benchmarks.common import WORKLOADS
    from benchmarks.measure import Bench
    from benchmarks.step_profile import part_flops, recount, step_parts

    parts, _ = step_parts(Bench(repeats=1), WORKLOADS["mlp-quick"], "float32")
    old = {name: {"s": 0.002, "flops": 1.0, "tflops": 5e-10} for name in parts}
    old["scan_step"] = {"s": 0.001, "flops": 1.0, "tflops": 6e-10, "epoch_s": 0.006, "steps_per_epoch": 6}
    profile = {"kind": "profile", "workload": "mlp-quick", "dtype": "float32", "components": old}
    other = {"kind": "measurement", "workload": "mlp-quick"}
    new_profile, same = recount([profile, other])
    assert same is other
    step = part_flops(*parts["step"])["flops"]
    comps = new_profile["components"]
    assert comps["step"]["flops"] == step and comps["step"]["s"] == 0.002 and comps["step"]["flops_as_recorded"] == 1.0
    assert comps["step"]["tflops"] == step / 0.002 / 1e12
    assert comps["scan_step"]["flops"] == step and comps["scan_step"]["tflops"] == step * 6 / 0.006 / 1e12
    assert comps["forward_eval"]["flops"] < comps["grad"]["flops"] and "recounted on" in comps["grad"]["flops_source"]
    assert recount([new_profile])[0] is new_profile  # already counted this way: left alone


def test_torch_reference_runs_or_says_why(tmp_path):
    out = tmp_path / "torch.jsonl"
    _run(
        [
            "benchmarks/torch_reference.py",
            "--workload",
            "allcnn-quick",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--repeats",
            "1",
            "--out",
            str(out),
        ],
        timeout=240,
    )
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 4  # {train, blindspot} x {float32, bfloat16}
    if importlib.util.find_spec("torch") is None:
        assert all(r["kind"] == "skipped" and "torch not importable" in r["reason"] for r in records)
        return  # torch is an optional extra: without it, the honest "skipped" records are what is checked
    for rec in records:
        assert rec["kind"] == "measurement", rec.get("error")
        assert rec["epoch_s_median"] > 0 and rec["samples_per_s"] > 0
        assert all(_finite(rec["quality"][m]["mean"]) for m in ("train_loss", "test_retain_mae", "test_forget_mae"))


def test_summary_checks_the_auto_strategy_against_the_fastest():
    # On a GPU, auto runs conv nets with "map" and dense/recurrent models with "vmap".
    recs = [
        _rec("allcnn", "train", 8, "map", "float32", 0.70),
        _rec("allcnn", "train", 8, "host", "float32", 0.72),
        _rec("allcnn", "train", 8, "vmap", "float32", 1.50),
        _rec("lstm", "train", 32, "vmap", "float32", 0.08),
        _rec("lstm", "train", 32, "map", "float32", 0.50),
    ]
    assert _status(render_summary(recs), "'auto' seed strategy") == "met"
    recs[1] = _rec("allcnn", "train", 8, "host", "float32", 0.50)  # host clearly faster than auto's map
    text = render_summary(recs)
    assert _status(text, "'auto' seed strategy") == "not met" and "auto=map 1.40x the fastest (host)" in text


def test_sweep_benchmark_times_three_modes_that_agree(tmp_path):
    from benchmarks import sweep

    out = tmp_path / "sweep.jsonl"
    assert (
        sweep.main(
            [
                "--dataset",
                "synthetic",
                "--synthetic-rows",
                "400",
                "--seeds",
                "2",
                "--epochs",
                "2",
                "--batch-size",
                "64",
                "--repeats",
                "1",
                "--sweep",
                "blindspot.beta=0,10",
                "--out",
                str(out),
                "--summary",
                str(tmp_path / "sweep.md"),
            ]
        )
        == 0
    )
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["mode"] for r in records] == list(sweep.MODES)
    for r in records:
        assert r["rows"] == ["blindspot[beta=0]", "blindspot[beta=10]"] and r["plan"] == "map"
        assert r["max_state_diff_vs_separate"] == 0.0  # map plan: every mode computes the same states
        assert _finite(r["run_s_median"]) and r["run_s_median"] > 0 and len(r["final_train_loss"]) == 2
    assert "swept+shared" in (tmp_path / "sweep.md").read_text()


def test_stage_memory_plans_less_per_seed_with_the_carry_donated(capsys):
    from benchmarks.stage_memory import measure

    (row,) = measure("mlp", ["finetune"], lambda line: None)
    assert 0 < row["after_per_seed_bytes"] < row["before_per_seed_bytes"]
    assert row["after_seeds_per_h200"] > row["before_seeds_per_h200"]
    assert row["kept_per_seed_bytes_with_adam"] > 2.99 * row["kept_per_seed_bytes"]  # Adam: two moments (+ scalars)
