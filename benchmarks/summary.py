"""Markdown summary of benchmark JSONL records, with the accelerator targets marked
met / not met / not measured.

    python -m benchmarks.suite summarise bench.jsonl [more.jsonl] --out bench.md
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.common import read_records

QUALITY = ("train_loss", "val_loss", "test_retain_mae", "test_forget_mae")
SAME_AS_ONE_SEED_TOLERANCE = 1.05  # "no worse than one seed alone", allowing 5% timing noise


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        if value != 0 and abs(value) < 10**-digits:
            return f"{value:.1e}"
        if abs(value) >= 1e4:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    return str(value)


def _mib(value: Any) -> str:
    return "-" if value is None else f"{value / 2**20:,.0f}"


def _device_key(rec: dict) -> tuple[str, str]:
    return rec.get("device") or "?", rec.get("backend") or "?"


def _jax(records):
    return [r for r in records if r.get("kind") == "measurement" and r.get("framework") == "jax"]


def _one_seed(records, rec) -> dict | None:
    for r in records:
        if (
            r["seeds"] == 1
            and r["workload"] == rec["workload"]
            and r["phase"] == rec["phase"]
            and r["dtype"] == rec["dtype"]
            and _device_key(r) == _device_key(rec)
        ):
            return r
    return None


def measurement_table(records: list[dict]) -> list[str]:
    head = (
        "| workload | phase | dtype | seeds | strategy | compile s | start s | s/epoch (all seeds) | "
        "s/epoch per seed | samples/s | TFLOP/s | vs 1 seed | program MiB | process peak MiB | train loss | "
        "test forget MAE | test retain MAE | time vs retrain |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    order = {
        "train": 0,
        "retrain": 1,
        "proxy": 2,
        "finetune": 3,
        "gaussian": 4,
        "blindspot": 5,
        "blindspot-inloop": 6,
        "neggrad": 7,
        "scrub-min": 8,
        "scrub-max": 9,
        "ssd-importance": 10,
        "ssd-dampen": 11,
    }
    rows = sorted(
        records,
        key=lambda r: (r["workload"], r["dtype"] != "float32", r["seeds"], r["strategy"], order.get(r["phase"], 9)),
    )
    for r in rows:
        base = _one_seed(records, r)
        speed = r["seed_epochs_per_s"] / base["seed_epochs_per_s"] if base else None
        q = r.get("quality", {})

        def qm(name, q=q, seeds=r["seeds"]):
            m = q.get(name)
            return "-" if not m else f"{_fmt(m['mean'])} ± {_fmt(m['std'])}" if seeds > 1 else _fmt(m["mean"])

        lines.append(
            f"| {r['workload']} | {r['phase']} | {r['dtype']} | {r['seeds']} | {r['strategy']} | "
            f"{_fmt(r['compile_s'], 1)} | {_fmt(r.get('start_s'), 4)} | {_fmt(r['epoch_s_median'], 4)} | "
            f"{_fmt(r['per_seed_epoch_s'], 4)} | "
            f"{_fmt(r['samples_per_s'], 0)} | {_fmt(r['achieved_tflops'], 2)} | "
            f"{'-' if speed is None else f'{speed:.2f}x'} | {_mib(r.get('program_bytes'))} | "
            f"{_mib(r.get('peak_bytes_in_use'))} | {qm('train_loss')} | {qm('test_forget_mae')} | "
            f"{qm('test_retain_mae')} | {_fmt(r.get('ratio_vs_retrain'), 4)} |"
        )
    return lines


def torch_table(records: list[dict]) -> list[str]:
    torch = [r for r in records if r.get("kind") == "measurement" and r.get("framework") == "torch"]
    if not torch:
        return ["No PyTorch reference records (torch not importable, or not run)."]
    jax_recs = _jax(records)
    lines = [
        "| workload | phase | dtype | PyTorch eager s/epoch | best JAX 1-seed s/epoch (strategy) | JAX speedup |",
        "|---|---|---|---|---|---|",
    ]
    for t in torch:
        same = [
            r
            for r in jax_recs
            if r["seeds"] == 1
            and r["workload"] == t["workload"]
            and r["phase"] == t["phase"]
            and r["dtype"] == t["dtype"]
            and r["device"] == t["device"]
        ]
        best = min(same, key=lambda r: r["epoch_s_median"], default=None)
        lines.append(
            f"| {t['workload']} | {t['phase']} | {t['dtype']} | {_fmt(t['epoch_s_median'], 4)} | "
            + (
                f"{_fmt(best['epoch_s_median'], 4)} ({best['strategy']}) | "
                f"{t['epoch_s_median'] / best['epoch_s_median']:.2f}x |"
                if best
                else "- | - |"
            )
        )
    return lines


# -- targets --------------------------------------------------------------------------
def _per_seed_best(recs, workload, phase, limit):
    hits = [r for r in recs if r["workload"] == workload and r["phase"] == phase]
    if not hits:
        return "not measured", "no records"
    best = min(hits, key=lambda r: r["per_seed_epoch_s"])
    detail = (
        f"best {best['per_seed_epoch_s']:.4f} s per seed ({best['dtype']}, {best['seeds']} seeds, "
        f"{best['strategy']}); limit {limit} s"
    )
    per_dtype = {}
    for r in hits:
        per_dtype[r["dtype"]] = min(per_dtype.get(r["dtype"], math.inf), r["per_seed_epoch_s"])
    detail += "; per dtype: " + ", ".join(f"{d} {v:.4f}" for d, v in sorted(per_dtype.items()))
    return ("met" if best["per_seed_epoch_s"] <= limit else "not met"), detail


def _eight_vs_one(recs, workload):
    parts, ok, seen = [], True, False
    for phase in ("train", "blindspot"):
        for dtype in ("float32", "bfloat16"):
            one = [
                r
                for r in recs
                if r["workload"] == workload and r["phase"] == phase and r["dtype"] == dtype and r["seeds"] == 1
            ]
            eight = [
                r
                for r in recs
                if r["workload"] == workload and r["phase"] == phase and r["dtype"] == dtype and r["seeds"] == 8
            ]
            if not one or not eight:
                continue
            seen = True
            best = min(eight, key=lambda r: r["per_seed_epoch_s"])
            ratio = best["per_seed_epoch_s"] / one[0]["per_seed_epoch_s"]
            ok &= ratio <= SAME_AS_ONE_SEED_TOLERANCE
            parts.append(f"{phase}/{dtype}: {ratio:.2f}x one seed's cost ({best['strategy']})")
    if not seen:
        return "not measured", "needs 1- and 8-seed records"
    return ("met" if ok else "not met"), "; ".join(parts) + f" (met if <= {SAME_AS_ONE_SEED_TOLERANCE}x)"


def _scaling(recs, workload, seeds, factor):
    parts, ok, seen = [], True, False
    for dtype in ("float32", "bfloat16"):
        one = [
            r
            for r in recs
            if r["workload"] == workload and r["phase"] == "train" and r["dtype"] == dtype and r["seeds"] == 1
        ]
        many = [
            r
            for r in recs
            if r["workload"] == workload and r["phase"] == "train" and r["dtype"] == dtype and r["seeds"] == seeds
        ]
        if not one or not many:
            continue
        seen = True
        best = max(many, key=lambda r: r["seed_epochs_per_s"])
        gain = best["seed_epochs_per_s"] / one[0]["seed_epochs_per_s"]
        ok &= gain >= factor
        parts.append(f"{dtype}: {gain:.1f}x ({best['strategy']})")
    if not seen:
        return "not measured", f"needs 1- and {seeds}-seed training records"
    return ("met" if ok else "not met"), "; ".join(parts) + f" (target >= {factor}x)"


def _same_work(r) -> tuple:
    """Items that trained the same seeds for the same number of epochs (the timed repeats
    decide how many epochs a phase ran, so records of different runs may differ)."""
    return r["workload"], r["phase"], r["seeds"], len(r.get("epoch_s_all") or ())


def bf16_pairs(recs) -> list[tuple[dict, dict]]:
    """(fp32, bf16) records of the same work under the same seed strategy, >= 2 seeds."""
    fp32 = {(*_same_work(r), r["strategy"]): r for r in recs if r["dtype"] == "float32" and r["seeds"] > 1}
    return [
        (fp32[k], r) for r in recs if r["dtype"] == "bfloat16" for k in [(*_same_work(r), r["strategy"])] if k in fp32
    ]


def rounding_pairs(recs) -> list[tuple[dict, dict]]:
    """(fp32, fp32) records of the same work under two seed strategies: the same seeds and
    arithmetic, different only in rounding (summation order, kernel choice); the control
    that shows how far float rounding alone moves the quality metrics."""
    groups = defaultdict(list)
    for r in recs:
        if r["dtype"] == "float32" and r["seeds"] > 1:
            groups[_same_work(r)].append(r)
    return [
        (a, b)
        for group in groups.values()
        for i, a in enumerate(group)
        for b in group[i + 1 :]
        if a["strategy"] != b["strategy"]
    ]


def _compare(pairs) -> tuple[int, list[str], list[float]]:
    """Metric pairs checked; those whose means differ by more than one seed-to-seed standard
    deviation (the larger of the two); and each pair's paired-t p-value over the seeds."""
    from jaxunlearn.claims import paired_p_value

    bad, p_values = [], []
    for a, b in pairs:
        for m in QUALITY:
            qa, qb = a["quality"].get(m), b["quality"].get(m)
            if not qa or not qb or qa["mean"] is None or qb["mean"] is None:
                continue
            p_values.append(paired_p_value(np.asarray(qb["per_seed"], float) - np.asarray(qa["per_seed"], float)))
            noise = max(qa["std"] or 0.0, qb["std"] or 0.0)
            if abs(qb["mean"] - qa["mean"]) > noise:
                bad.append(
                    f"{a['workload']}/{a['phase']}/S={a['seeds']}/{a['strategy']} {m}: "
                    f"{a['dtype']} {qa['mean']:.4f} ± {qa['std']:.4f} vs {b['dtype']}"
                    + ("" if a["strategy"] == b["strategy"] else f"/{b['strategy']}")
                    + f" {qb['mean']:.4f} ± {qb['std']:.4f}"
                )
    return len(p_values), bad, p_values


def _paired_tests(p_values: list[float]) -> str:
    from jaxunlearn.claims import holm_rejections

    finite = [p for p in p_values if math.isfinite(p)]
    if not finite:
        return "no paired test (fewer than 2 seeds)"
    return (
        f"paired t over seeds: smallest p {min(finite):.3g}, {sum(p < 0.05 for p in finite)} below 0.05, "
        f"{sum(holm_rejections(p_values))} significant after Holm over the {len(p_values)}"
    )


def bf16_quality(recs):
    """|mean_bf16 - mean_fp32| <= one seed-to-seed standard deviation (the larger of the
    two), for every metric of every item measured in both dtypes. The evidence adds paired
    t-tests over the seeds (Holm-corrected) and, as a control, both checks on fp32 runs of
    the same work under two seed strategies (rounding alone)."""
    pairs = bf16_pairs(recs)
    if not pairs:
        return "not measured", "needs fp32 and bf16 records of the same item with >= 2 seeds"
    checked, bad, p_values = _compare(pairs)
    detail = f"{checked} metric pairs over {len(pairs)} items"
    detail += "; outside noise: " + "; ".join(bad) if bad else "; none outside noise"
    detail += f"; {_paired_tests(p_values)}"
    control = rounding_pairs(recs)
    if control:
        c_checked, c_bad, c_p = _compare(control)
        detail += (
            f". Control, fp32 against fp32 under another seed strategy (rounding alone): {len(c_bad)} of "
            f"{c_checked} metric pairs outside noise"
            + (" (" + "; ".join(c_bad) + ")" if c_bad else "")
            + f"; {_paired_tests(c_p)}"
        )
    return ("met" if not bad else "not met"), detail


def auto_strategy(recs):
    """The 'auto' plan's seed strategy (``jaxunlearn.seeds.auto_plan`` for the model's family on
    this backend) is the fastest measured one, within timing noise, wherever several were measured."""
    from jaxunlearn.models import model_family
    from jaxunlearn.seeds import auto_plan

    groups = defaultdict(list)
    for r in recs:
        if r["seeds"] > 1:
            groups[(r["workload"], r["model"], r["phase"], r["dtype"], r["seeds"], r.get("backend"))].append(r)
    parts, ok, seen = [], True, False
    for (workload, model, phase, dtype, seeds, backend), group in sorted(groups.items()):
        if len({r["strategy"] for r in group}) < 2:
            continue
        seen = True
        fastest = min(group, key=lambda r: r["epoch_s_median"])
        choice = auto_plan(model_family(model), backend).seed_strategy
        chosen = [r for r in group if r["strategy"] == choice]
        ratio = chosen[0]["epoch_s_median"] / fastest["epoch_s_median"] if chosen else math.inf
        good = ratio <= SAME_AS_ONE_SEED_TOLERANCE
        ok &= good
        if not good or fastest["strategy"] != choice:
            parts.append(
                f"{workload}/{phase}/{dtype}/S={seeds}: auto={choice} "
                + (f"{ratio:.2f}x the fastest ({fastest['strategy']})" if chosen else "not measured")
            )
    if not seen:
        return "not measured", "needs one item measured under several seed strategies"
    return ("met" if ok else "not met"), (
        "; ".join(parts) if parts else "auto's choice was the fastest everywhere"
    ) + f" (met if within {SAME_AS_ONE_SEED_TOLERANCE}x of the fastest)"


TARGETS: list[tuple[str, Callable]] = [
    ("AllCNN blindspot epoch <= 0.08 s per seed", lambda r: _per_seed_best(r, "allcnn", "blindspot", 0.08)),
    ("AllCNN training epoch <= 0.06 s per seed", lambda r: _per_seed_best(r, "allcnn", "train", 0.06)),
    ("AllCNN, 8 seeds: cost per seed no worse than one seed alone", lambda r: _eight_vs_one(r, "allcnn")),
    ("LSTM, 32 seeds: >= 12x single-seed throughput", lambda r: _scaling(r, "lstm", 32, 12.0)),
    ("MLP, 32 seeds: >= 20x single-seed throughput", lambda r: _scaling(r, "mlp", 32, 20.0)),
    ("bf16 keeps every quality metric within seed-to-seed noise of fp32", bf16_quality),
    ("'auto' seed strategy picks the fastest measured option per model", auto_strategy),
]


def targets_table(records: list[dict]) -> list[str]:
    """Targets apply to full-size workloads on a GPU; CPU records never count as measured."""
    lines = ["| target | status | evidence |", "|---|---|---|"]
    by_device = defaultdict(list)
    for r in _jax(records):
        if r.get("backend") == "gpu" and r.get("full_size"):
            by_device[r["device"]].append(r)
    if not by_device:
        for name, _ in TARGETS:
            lines.append(f"| {name} | not measured | no full-size GPU records (targets are for one H100/H200) |")
        return lines
    for device, recs in sorted(by_device.items()):
        for name, check in TARGETS:
            status, detail = check(recs)
            lines.append(f"| {name} ({device}) | **{status}** | {detail} |")
    return lines


def _item_key(r: dict) -> tuple:
    return (
        r.get("framework"),
        r.get("device"),
        r.get("workload"),
        r.get("phase"),
        r.get("dtype"),
        r.get("seeds"),
        r.get("strategy"),
    )


def unresolved_problems(records: list[dict]) -> tuple[list[dict], int]:
    """Skipped or failed records that no measurement of the same item (device, workload,
    phase, dtype, seeds, strategy) answers, and how many others were answered."""
    measured = {_item_key(r) for r in records if r.get("kind") in ("measurement", "profile")}
    problems = [r for r in records if r.get("kind") in ("skipped", "error")]
    left = [r for r in problems if _item_key(r) not in measured]
    return left, len(problems) - len(left)


def render_summary(records: list[dict]) -> str:
    out = ["# jaxunlearn benchmark summary", ""]
    runs = sorted(
        {
            tuple(
                str(x)
                for x in (
                    r.get("framework"),
                    r.get("device"),
                    r.get("backend"),
                    r.get("versions"),
                    r.get("git_commit"),
                    (r.get("date_utc") or "")[:10],
                )
            )
            for r in records
        }
    )
    out.append("Runs (framework, device, backend, versions, commit, date):")
    out += [f"- {' | '.join(str(x) for x in run)}" for run in runs]
    out.append("")
    kinds = defaultdict(int)
    for r in records:
        kinds[r.get("kind")] += 1
    out.append(
        f"{kinds['measurement']} measurements, {kinds['profile']} step profiles, {kinds['skipped']} skipped, "
        f"{kinds['error']} failed."
    )
    for device in sorted({_device_key(r) for r in _jax(records)}):
        recs = [r for r in _jax(records) if _device_key(r) == device]
        out += ["", f"## {device[0]} ({device[1]})", ""]
        if device[1] == "cpu":
            out += [
                (
                    "CPU run: `device.memory_stats()` is unavailable on XLA:CPU, so peak memory is '-'; "
                    "'program MiB' is XLA's memory analysis of the timed program."
                ),
                "",
            ]
        else:
            out += [
                (
                    "'program MiB' is XLA's memory analysis of the timed program (arguments, outputs, "
                    "temporaries); 'process peak MiB' is the device's high-water mark since the measuring "
                    "process started (JAX cannot reset it), so it bounds the row from above and may come "
                    "from an earlier item of the same run."
                ),
                "",
            ]
        out += measurement_table(recs)
    out += [
        "",
        (
            "Time per epoch is the median of the timed epochs after the compiling one (all seeds together); "
            "'vs 1 seed' is seed-epochs/s over the 1-seed rate; 'time vs retrain' projects the paper's epoch "
            "counts (retrain 100, fine-tune 5, Gaussian 1, blindspot proxy 2 + student 1, NegGrad+ 5, SCRUB 5 "
            "min + 1 max passes) onto the median "
            "epoch times of the same group, plus each phase's 'start s' (building its initial state; for "
            "'blindspot' that includes computing the proxy cache on the forget rows, which "
            "'blindspot-inloop' does on every batch instead); quality is mean ± seed-to-seed std "
            "(standardised units, synthetic data)."
        ),
    ]
    out += ["", "## PyTorch eager reference vs JAX (same device)", "", *torch_table(records)]
    if any(r.get("kind") == "profile" for r in records):
        from benchmarks.step_profile import profile_table

        out += [
            "",
            "## One training step taken apart (1 seed)",
            "",
            "Each part compiled and timed on its own (median of 10 calls); 'scan_step' is the median "
            "epoch of the library's loop (its validation pass included) divided by its steps, with the "
            "step's FLOPs. FLOPs are the suite's matmul/conv count. What 'step' adds to "
            "'grad' is the optimizer; what 'scan_step' adds to 'step' is the loop, the batch gather and "
            "the divergence guard. A part called on its own also pays one dispatch (tens of microseconds), "
            "which dominates tiny steps.",
            "",
            *profile_table(records),
        ]
    out += ["", "## Targets", "", *targets_table(records)]
    problems, superseded = unresolved_problems(records)
    if superseded:
        out += [
            "",
            f"{superseded} skipped or failed items were measured by a later run of the same records "
            "and are not listed below.",
        ]
    if problems:
        out += [
            "",
            "## Skipped or failed",
            "",
            "| workload | phase | dtype | seeds | strategy | kind | why |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in problems:
            why = (r.get("reason") or r.get("error") or "").replace("|", "/").replace("\n", " ")[:200]
            out.append(
                f"| {r.get('workload')} | {r.get('phase')} | {r.get('dtype')} | {r.get('seeds')} | "
                f"{r.get('strategy')} | {r['kind']} | {why} |"
            )
    return "\n".join(out) + "\n"


def write_summary(paths: list[str], out_path: str) -> str:
    text = render_summary(read_records(paths))
    with open(out_path, "w") as sink:
        sink.write(text)
    return text
