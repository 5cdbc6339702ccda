"""Builds docs/RESULTS.md from the studies under docs/results/<domain>/.

Run each domain's command (shown in RESULTS.md and in DOMAINS below), then
``python docs/make_results.py``. Every number on the page is read from the studies'
results.json files; the paper's numbers come from ../shared/ALGORITHMS.md (quoted below).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from jaxunlearn.claims import claims_table, evaluate_claims, holm
from jaxunlearn.metrics.suite import TABLE_COLUMNS
from jaxunlearn.report import atomic_write_text, format_table

DOCS = Path(__file__).resolve().parent


def _setting(cfg: dict, stage: str, field: str):
    """An unlearner's static setting in a results.json configuration: its ``settings``
    table (defaults from the registry), or the flat field of studies run before it."""
    from jaxunlearn.config import StudyConfig
    from jaxunlearn.unlearn import registry

    old = {f"{s}_{f}": (s, f) for s, f in registry.alias_fields().values()}
    old.update(registry.alias_fields())  # e.g. proxy_epochs -> blindspot.proxy_epochs
    flat = {key: cfg[key] for key, target in old.items() if target == (stage, field) and key in cfg}
    if flat:
        return next(iter(flat.values()))
    return getattr(StudyConfig(settings=cfg.get("settings", {})).resolved_settings(stage), field)


ROWS = ["original", "retrain", "finetune", "gaussian", "blindspot", "neggrad", "scrub", "ssd", "lfssd"]

# The authors' notebook outputs (one unseeded run each), from the paper's public code.
PAPER_AGEDB = """| model | retain MAE | forget MAE | Wasserstein | MIA forget | AIN |
|---|---|---|---|---|---|
| original | 9.33 | 12.77 | 2.99 | 0.593 | - |
| retrain | 11.38 | 24.31 | 0 | 0.301 | 1 |
| fine-tune | 9.79 | 14.83 | 1.62 | 0.429 | 0.0066 |
| Gaussian amnesiac | 9.81 | 17.07 | 2.33 | 0.497 | 0.0096 |
| blindspot | 9.98 | 21.63 | 1.15 | 0.403 | 0.333 |"""
PAPER_STSB = """| model | retain MSE | forget MSE |
|---|---|---|
| original | 2.84 | 1.79 |
| retrain | 0.93 | 7.22 |
| fine-tune | 1.07 | 5.55 |
| Gaussian amnesiac | 1.21 | 4.82 |
| blindspot | 0.98 | 6.39 |"""

DOMAINS = [
    {
        "key": "vision",
        "title": "Computer vision (the paper: AgeDB face age, AllCNN, L1, forget age <= 30)",
        "command": "jaxunlearn run --config configs/agedb.toml --model-arg width=16 --epochs 15 --augment-pad 0 "
        "--checkpoint-dir docs/results/vision-baselines/checkpoints --plots --out docs/results/vision",
        "paper": ("AgeDB, AllCNN, forget age <= 30, MAE in years, test split", PAPER_AGEDB),
        "deviations": "CPU-sized: AllCNN width 16 instead of 96 and 15 training epochs instead of 100 (the "
        "full size is a GPU job). The original and retrained models are the vision baselines "
        "study's (the same configuration; loaded from its checkpoints). Augmentation is off "
        "because a horizontal flip negates a rotation angle, the stand-in's target.",
    },
    {
        "key": "text",
        "title": "NLP (the paper: STS-B sentence similarity, LSTM, MSE, forget score < 2)",
        "command": "jaxunlearn run --config configs/stsb.toml --plots --out docs/results/text",
        "paper": ("STS-B, LSTM over GloVe-300d, forget score < 2, MSE on the test split", PAPER_STSB),
        "deviations": "GloVe 6B 50-d instead of 300-d (the vectors that ship in a registry package).",
    },
    {
        "key": "forecasting",
        "title": "Forecasting (electricity load; the paper published no unlearning experiment)",
        "command": "jaxunlearn run --config configs/electricity.toml --plots --out docs/results/forecasting",
        "paper": None,
        "deviations": "None from the config: 100 epochs, batch 256, paper unlearning epochs.",
    },
    {
        "key": "forecasting-sweep",
        "title": "How much do the unlearners' settings matter? A sweep on the forecasting study",
        "command": "jaxunlearn run --config configs/electricity.toml --sweep gaussian.lr=1e-4,3e-4,1e-3 "
        "--sweep blindspot.lr=1e-4,3e-4,1e-3 --sweep blindspot.beta=0,10,50 --plots "
        "--out docs/results/forecasting-sweep",
        "paper": None,
        "deviations": "None from the config; the rows differ only in the swept learning rates and beta (the "
        "paper's values are lr 1e-3 and beta 50).",
        "sweep": True,  # every row of the study, no claim table (its rows are not one Blindspot)
    },
    {
        "key": "text-sweep",
        "title": "Does beta matter with a recurrent model? A sweep on the text study",
        "command": "jaxunlearn run --config configs/stsb.toml --unlearners finetune,blindspot "
        "--sweep finetune.lr=3e-4,1e-3 --sweep blindspot.beta=0,50,500 --sweep blindspot.lr=3e-4,1e-3 "
        "--plots --out docs/results/text-sweep",
        "paper": None,
        "deviations": "As the text study above (GloVe 6B 50-d); the rows differ only in the swept learning rate "
        "and beta (the paper's values are lr 1e-3 and beta 50), and fine-tuning's learning rate.",
        "sweep": True,
    },
    {
        "key": "vision-baselines",
        "title": "Beyond the paper: NegGrad+ and SCRUB on the vision study",
        "command": "jaxunlearn run --config configs/agedb.toml --model-arg width=16 --epochs 15 --augment-pad 0 "
        "--unlearners finetune,gaussian,blindspot,neggrad,scrub --plots "
        "--out docs/results/vision-baselines",
        "paper": None,
        "deviations": "As the vision study above (CPU-sized AllCNN, no augmentation); NegGrad+ and SCRUB at their "
        "defaults only (retain weight 0.95, distill weight 1; lr 1e-3, 5 epochs, SCRUB 1 max pass), "
        "since a sweep of this conv net is GPU-sized.",
    },
    {
        "key": "text-baselines",
        "title": "Beyond the paper: NegGrad+ and SCRUB on the text study",
        "command": "jaxunlearn run --config configs/stsb.toml --unlearners finetune,gaussian,blindspot,neggrad,scrub "
        "--sweep neggrad.retain_weight=0.9,0.95,0.99 --sweep scrub.distill_weight=0.1,1,10 --plots "
        "--out docs/results/text-baselines",
        "paper": None,
        "deviations": "As the text study above (GloVe 6B 50-d); NegGrad+ and SCRUB at lr 1e-3 for 5 epochs "
        "(SCRUB: 1 max pass), each at three values of its weight.",
        "sweep": True,
    },
    {
        "key": "forecasting-baselines",
        "title": "Beyond the paper: NegGrad+ and SCRUB on the forecasting study",
        "command": "jaxunlearn run --config configs/electricity.toml --unlearners finetune,gaussian,blindspot,neggrad,"
        "scrub --sweep neggrad.retain_weight=0.9,0.95,0.99 --sweep scrub.distill_weight=0.1,1,10 --plots "
        "--out docs/results/forecasting-baselines",
        "paper": None,
        "deviations": "None from the config for the paper's unlearners (their rows reproduce the forecasting study "
        "above); NegGrad+ and SCRUB at lr 1e-3 for 5 epochs (SCRUB: 1 max pass), each at three "
        "values of its weight.",
        "sweep": True,
    },
    {
        "key": "vision-ssd",
        "title": "Beyond the paper: SSD, retraining-free, on the vision study",
        "command": "jaxunlearn run --config configs/agedb.toml --model-arg width=16 --epochs 15 --augment-pad 0 "
        "--unlearners finetune,ssd --sweep ssd.selection_weight=10,30,100,300 "
        "--checkpoint-dir docs/results/vision-baselines/checkpoints --keep-unlearned --plots "
        "--out docs/results/vision-ssd",
        "paper": None,
        "deviations": "As the vision study above (CPU-sized AllCNN, no augmentation); the original and retrained "
        "models are the vision baselines study's (loaded from its checkpoints); SSD at dampening 1 "
        "and selection weights 10 (both its paper's values), 30, 100 and 300.",
        "sweep": True,
    },
    {
        "key": "text-ssd",
        "title": "Beyond the paper: SSD, retraining-free, on the text study",
        "command": "jaxunlearn run --config configs/stsb.toml --unlearners finetune,ssd "
        "--sweep ssd.selection_weight=10,30,100,300 --plots "
        "--out docs/results/text-ssd",
        "paper": None,
        "deviations": "As the text study above (GloVe 6B 50-d); SSD at dampening 1 and selection "
        "weights 10 (both its paper's values), 30, 100 and 300.",
        "sweep": True,
    },
    {
        "key": "forecasting-ssd",
        "title": "Beyond the paper: SSD, retraining-free, on the forecasting study",
        "command": "jaxunlearn run --config configs/electricity.toml --unlearners finetune,ssd "
        "--sweep ssd.selection_weight=10,30,100,300 --plots "
        "--out docs/results/forecasting-ssd",
        "paper": None,
        "deviations": "None from the config; SSD at dampening 1 and selection weights "
        "10 (both its paper's values), 30, 100 and 300.",
        "sweep": True,
    },
    {
        "key": "vision-lfssd",
        "title": "Beyond the paper: LFSSD, retraining- and label-free, on the vision study",
        "command": "jaxunlearn run --config configs/agedb.toml --model-arg width=16 --epochs 15 --augment-pad 0 "
        "--unlearners finetune,lfssd --sweep lfssd.selection_weight=10,30,100,300 "
        "--checkpoint-dir docs/results/vision-baselines/checkpoints --keep-unlearned --plots "
        "--out docs/results/vision-lfssd",
        "paper": None,
        "deviations": "As the SSD section on vision above (the same original and retrained models, loaded from "
        "the vision baselines study's checkpoints); LFSSD at dampening 1 and the same selection "
        "weights.",
        "sweep": True,
    },
    {
        "key": "text-lfssd",
        "title": "Beyond the paper: LFSSD, retraining- and label-free, on the text study",
        "command": "jaxunlearn run --config configs/stsb.toml --unlearners finetune,lfssd "
        "--sweep lfssd.selection_weight=10,30,100,300 "
        "--checkpoint-dir docs/results/text-ssd/checkpoints --keep-unlearned --plots "
        "--out docs/results/text-lfssd",
        "paper": None,
        "deviations": "As the SSD section on text above (its original, retrained and fine-tuned models, loaded "
        "from its checkpoints); LFSSD at dampening 1 and the same selection weights.",
        "sweep": True,
    },
    {
        "key": "forecasting-lfssd",
        "title": "Beyond the paper: LFSSD, retraining- and label-free, on the forecasting study",
        "command": "jaxunlearn run --config configs/electricity.toml --unlearners finetune,lfssd "
        "--sweep lfssd.selection_weight=10,30,100,300 "
        "--checkpoint-dir docs/results/forecasting-ssd/checkpoints --keep-unlearned --plots "
        "--out docs/results/forecasting-lfssd",
        "paper": None,
        "deviations": "As the SSD section on forecasting above (its original, retrained and fine-tuned models, "
        "loaded from its checkpoints); LFSSD at dampening 1 and the same selection weights.",
        "sweep": True,
    },
]


def _sweep_matrix(per_seed: dict, rival: str) -> list[str]:
    """Each unlearner row of another stage than ``rival``'s against ``rival`` on the paper's
    four claims and the retain-error claim: paired margin (positive = the row is better) and
    verdict."""
    rows = [r for r in per_seed if r not in ("original", "retrain") and r.split("[")[0] != rival.split("[")[0]]
    verdicts = {r: evaluate_claims(per_seed, subject=r, rivals=[rival]) for r in rows}
    family = [v for r in rows for v in verdicts[r]]  # the whole matrix: Holm's family
    corrected = iter(holm(family))
    heads = [f"{v.claim} (vs {v.versus})" for v in verdicts[rows[0]]]
    lines = ["| row | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
    for r in rows:
        cells = []
        for v in verdicts[r]:
            after = next(corrected)
            cells.append(
                f"{v.mean:.3g} ± {v.ci95:.3g} **{v.outcome}**" + ("" if after == v.outcome else f" (Holm: {after})")
            )
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Holm's correction over the matrix's {len(family)} comparisons: "
        f"{sum(v.outcome != 'inconclusive' for v in family)} significant before, "
        f"{sum(o != 'inconclusive' for o in holm(family))} after.",
    ]
    return lines


def _section(domain: dict) -> list[str]:
    folder = DOCS / "results" / domain["key"]
    data = json.loads((folder / "results.json").read_text())
    cfg, env = data["config"], data["environment"]
    task = cfg["task"]
    rows = list(data["summary"]) if domain.get("sweep") else [r for r in ROWS if r in data["summary"]]
    table = format_table(
        data["summary"], rows, TABLE_COLUMNS, digits=3, plain=("run_seconds", "time_vs_retrain"), spread="ci95"
    )
    used = task.get("dataset", cfg["dataset"])
    lines = [f"## {domain['title']}", "", "```bash", domain["command"], "```", ""]
    if used != cfg["dataset"]:
        lines.append(
            f"The paper's `{cfg['dataset']}` files were not present, so the study ran on the offline "
            f"stand-in **`{used}`**: {task['name']}."
        )
    else:
        lines.append(f"Data: {task['name']}.")
    lines += [
        "",
        f"{cfg['seeds']} seeds; model `{cfg['model']}` {cfg['model_kwargs'] or ''}, loss {cfg['loss']}, batch "
        f"{cfg['batch_size']}, {cfg['train_epochs']} training epochs; unlearning epochs: fine-tune "
        f"{_setting(cfg, 'finetune', 'epochs')}, Gaussian {_setting(cfg, 'gaussian', 'epochs')}, proxy "
        f"{_setting(cfg, 'blindspot', 'proxy_epochs')}, blindspot {_setting(cfg, 'blindspot', 'epochs')}"
        + "".join(
            f", {label} {_setting(cfg, stage, 'epochs')}"
            for label, stage in (("NegGrad+", "neggrad"), ("SCRUB", "scrub"))
            if stage in cfg["unlearners"]
        )
        + f". Train rows {task['train']['rows']} ({task['train']['forget']} forget). "
        f"Deviations: {domain['deviations']}",
        f"Run on {env['jax_backend']} ({', '.join(env['jax_device_kinds'])}), Python {env['python']}, "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items())
        + f", commit {str(env['git_commit'])[:10]}, "
        f"{env['timestamp_utc']}.",
        "",
        "Mean ± 95% confidence-interval half-width over seeds (`time s`: execution time of the stage for all "
        "seeds, compilation excluded):",
        "",
        table,
        "",
        f"![forget deviation histogram](results/{domain['key']}/forget_deviation_hist.png)",
        f"![errors with confidence intervals](results/{domain['key']}/errors_ci.png)",
        "",
    ]
    stats = [
        f"`{row}` {name.replace('_', ' ')} {np.mean(v):.3g} ({np.min(v):.3g} to {np.max(v):.3g})"
        for row, by_name in cfg.get("stage_stats", {}).items()
        for name, v in by_name.items()
    ]
    if stats:
        lines += [
            "What the rows report beyond their metrics (mean over seeds, smallest to largest): "
            + "; ".join(stats)
            + ".",
            "",
        ]
    if domain["paper"]:
        lines += [f"The paper's numbers ({domain['paper'][0]}; one unseeded run):", "", domain["paper"][1], ""]
    notes = folder / "notes.md"
    if notes.exists():
        lines += [notes.read_text().rstrip(), ""]
    if domain.get("sweep"):
        for rival in [r for r in data["per_seed"] if r.split("[")[0] == "finetune"]:
            lines += [
                f"Each swept row against `{rival}` on the same seeds (paired margin, mean ± 95% CI; positive "
                "means the row is nearer the retrained model, or for the retain claim keeps the retain error "
                "within 10% of the original's):",
                "",
                *_sweep_matrix(data["per_seed"], rival),
                "",
            ]
        return lines
    verdicts = evaluate_claims(data["per_seed"])
    counts = {
        o: [f"{v.claim} (vs {v.versus})" for v in verdicts if v.outcome == o]
        for o in ("holds", "fails", "inconclusive")
    }
    lines += [
        "The paper's claims about Blindspot, seed by seed (margin > 0 means Blindspot is better by that "
        "much; verdict from the paired 95% CI):",
        "",
        claims_table(verdicts),
        "",
        f"**Holds:** {'; '.join(counts['holds']) or 'none'}. **Fails:** {'; '.join(counts['fails']) or 'none'}. "
        f"**Inconclusive:** {'; '.join(counts['inconclusive']) or 'none'}. "
        f"After Holm's correction over these {len(verdicts)} comparisons, "
        + (", ".join(f"{sum(o == k for o in holm(verdicts))} {k}" for k in ("holds", "fails", "inconclusive")))
        + ".",
        "",
    ]
    return lines


def main() -> int:
    intro = (DOCS / "results_intro.md").read_text().rstrip() + "\n"
    lines = [intro]
    for domain in DOMAINS:
        if not (DOCS / "results" / domain["key"] / "results.json").exists():
            print(f"missing docs/results/{domain['key']}/results.json: run: {domain['command']}", file=sys.stderr)
            return 1
        lines += _section(domain)
    lines += ["Rebuild this page from the studies: `python docs/make_results.py`.", ""]
    atomic_write_text(DOCS / "RESULTS.md", "\n".join(lines))
    print(f"wrote {DOCS / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
