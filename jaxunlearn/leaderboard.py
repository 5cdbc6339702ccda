"""The fair benchmark: tasks x forget scenarios x unlearners, each unlearner tuned with the
same budget, scored on fresh seeds and a fresh forget draw, ranked in a leaderboard.

A CELL is one (task, scenario, unlearner). It is the unit of work, of resuming and of
sharding: ``run_leaderboard`` runs the cells (of its shard) that have no result file yet,

1. tunes the unlearner (``jaxunlearn.tuning.tune``: ``trials`` points, ``tune_seeds``
   seeds of their own, the tuning forget draw), then
2. scores the chosen values with ``run_study`` on ``seeds`` fresh seeds and the scoring
   draw (draw 0, the scenario's published rows),

and writes ``cells/TASK/SCENARIO/UNLEARNER.json`` atomically, so a killed benchmark loses
at most the cell it was running. Per (task, scenario) the original and retrained models of
each seed set are trained once and kept under ``checkpoints/`` for every cell and every
later run (a plug-in's cells reuse them). The leaderboard (``leaderboard.md``,
``leaderboard.json``) is rebuilt from whatever cell files exist, so merging shards is
copying their cell files into one folder (``merge_leaderboards``).

The score of a cell (``gap to retraining``, lower is better): per seed i,

    sqrt(gap_test_retain^2 + gap_test_forget^2 + gap_train_forget^2)

with gap = |the unlearned model's MAE - retrained model i's MAE| in standardised target
units, on the test retain rows, the test forget rows and the training forget rows; its
mean and 95% CI over seeds. The row "retrain (other seed)" scores retrained model i
against retrained model i+1: the noise floor, the score of an exact unlearner.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from collections.abc import Callable, Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np

from jaxunlearn import unlearn
from jaxunlearn.config import StudyConfig
from jaxunlearn.data.scenarios import SCENARIOS, scenario_rule, split_spec
from jaxunlearn.evaluation import neurips23
from jaxunlearn.evaluation.protocol import PROTOCOL_COLUMNS
from jaxunlearn.evaluation.table import markdown_table
from jaxunlearn.metrics.suite import gap_to_retrain
from jaxunlearn.report import format_table, jsonable, summarise
from jaxunlearn.tuning import TUNING_DRAW, tune, tuning_config

# Sequential requests (``jaxunlearn.sequential``): this many successive random requests of
# this fraction of each split; tuned on one request of that size, scored over all of them.
SEQUENTIAL, SEQUENTIAL_REQUESTS, SEQUENTIAL_FRACTION = "sequential", 4, 0.025
DEFAULT_SCENARIOS = (*SCENARIOS, SEQUENTIAL)  # every registered scenario, then sequential requests
SCORE_DRAW = 0  # the random scenarios' forget draw of the scores
NOISE_FLOOR_ROW = "retrain (other seed)"
TIMING_METRICS = ("run_seconds", "time_vs_retrain")  # measured, so never equal between two runs
# (metric, header) columns of each scenario's table, "score" first (the ranking).
COLUMNS = [
    ("score", "gap to retraining (lower)"),
    ("test_retain_mae", "retain MAE test"),
    ("test_forget_mae", "forget MAE test"),
    ("wasserstein", "W1 to retrain (lower)"),
    ("mia", "MIA forget (nearest retrain)"),
    ("time_vs_retrain", "time / retrain"),
]
# The per-example tests' table (``BenchSettings.models``): (metric, header), and where each
# control row's numbers come from: {row: (neurips23 row, ulira row)}.
PER_EXAMPLE_COLUMNS = [
    ("forgetting_quality", "F (higher)"),
    ("score", "final score (higher)"),
    ("eps_mean", "mean eps (lower)"),
    ("spread_ratio", "spread ratio (nearest 1)"),
    ("mean_shift", "mean shift (lower)"),
    ("ulira_auc", "U-LiRA AUC (nearest 0.5)"),
    ("ulira_tpr_at_1pct_fpr", "TPR @ 1% FPR (lower)"),
    ("ulira_exposed_rows", "exposed rows (lower)"),
]
PER_EXAMPLE_CONTROLS = {
    "retrain (noise floor)": (neurips23.FLOOR_ROW, "retrain"),
    "original": (neurips23.ORIGINAL_ROW, "original"),
}
FIGURE_FILE = "leaderboard.png"


@dataclasses.dataclass(frozen=True)
class BenchTask:
    """One task of the benchmark.

    Attributes:
        name: its name in folders and tables (letters, digits, ``-``, ``_``).
        cfg: the study settings that define it (dataset, model, loss, epochs, batch size,
            ...); the benchmark sets forget, seeds, seed, unlearners, hp and sweeps.
        raw: your own data (``jaxunlearn.data.sources.RawData``); None: ``cfg.dataset``.
        model: your own model, as ``run_study`` takes it; None: ``cfg.model``.
    """

    name: str
    cfg: StudyConfig
    raw: Any = None
    model: Any = None

    def __post_init__(self):
        if not self.name or not all(c.isalnum() or c in "-_" for c in self.name):
            raise ValueError(f"a task name is letters, digits, '-' and '_', got {self.name!r}")


@dataclasses.dataclass(frozen=True)
class BenchSettings:
    """How the benchmark runs.

    Attributes:
        scenarios: scenario specs (``jaxunlearn.data.scenarios``).
        unlearners: which unlearners (None: every registered one).
        trials: the tuning budget per unlearner and cell (equal for all).
        tune_seeds: seeds of the tuning studies; seeds: seeds of the scores.
        shard: (index, count): run only cells ``k`` with ``k % count == index``.
        models: N of the per-example tests (``jaxunlearn.evaluation``) each cell adds to its
            scores with its tuned values: the NeurIPS'23 forgetting quality F of N unlearned
            models against N retrained ones (and a second N: the noise floor), and for the
            random-row scenarios U-LiRA on N shadows; 0 leaves them out.
        groups: U-LiRA's training sets (even, >= 4, dividing ``models``).
    """

    scenarios: tuple[str, ...] = DEFAULT_SCENARIOS
    unlearners: tuple[str, ...] | None = None
    trials: int = 64
    tune_seeds: int = 4
    seeds: int = 8
    shard: tuple[int, int] = (0, 1)
    models: int = 64
    groups: int = 16

    def __post_init__(self):
        for name in ("trials", "tune_seeds", "seeds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.models, bool) or not isinstance(self.models, int) or self.models < 0:
            raise ValueError(f"models must be 0 (no per-example tests) or an integer >= 2, got {self.models!r}")
        if self.models:
            for protocol in ("neurips23", "ulira"):
                self.evaluation(protocol)  # models < 2, bad groups: refused here, before any work
        index, count = self.shard
        if not (isinstance(count, int) and count >= 1 and isinstance(index, int) and 0 <= index < count):
            raise ValueError(f"shard must be INDEX/COUNT with 0 <= INDEX < COUNT, got {index}/{count}")
        if not self.scenarios:
            raise ValueError("give at least one scenario")
        for spec in self.scenarios:
            if spec != SEQUENTIAL:
                split_spec(spec)  # unknown names and bad rules fail here
        if self.unlearners is not None:
            known = unlearn.names()
            bad = [u for u in self.unlearners if u not in known]
            if bad:
                raise ValueError(f"unknown unlearner(s) {bad}; choose from {known}")

    def resolved_unlearners(self) -> tuple[str, ...]:
        return tuple(unlearn.names()) if self.unlearners is None else tuple(self.unlearners)

    def protocols(self, scenario: str) -> tuple[str, ...]:
        """The per-example tests a cell of ``scenario`` runs: none with ``models == 0``;
        neurips23, and ulira when the scenario draws its rows at random (U-LiRA is not built
        for sequential requests: neurips23 only, after the last request)."""
        if not self.models:
            return ()
        if scenario == SEQUENTIAL or not split_spec(scenario)[0].random:
            return ("neurips23",)
        return ("neurips23", "ulira")

    def evaluation(self, protocol: str) -> Any:
        """The ``EvaluationConfig`` of ``protocol`` in a cell. The NeurIPS'23 rows' SVC attack
        runs on one model: the scores already report the paper's attack over every seed."""
        from jaxunlearn.evaluation import EvaluationConfig

        return EvaluationConfig(protocol, models=self.models, groups=self.groups, attack_models=1)


@dataclasses.dataclass(frozen=True)
class Cell:
    task: str
    scenario: str
    unlearner: str

    def path(self, out: Path) -> Path:
        return out / "cells" / self.task / _safe(self.scenario) / f"{self.unlearner}.json"


def _safe(spec: str) -> str:
    """A scenario spec as a folder name (a rule's characters replaced)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in spec)


def plan_cells(tasks: Sequence[BenchTask], settings: BenchSettings) -> list[Cell]:
    """Every cell in the benchmark's fixed order (task, scenario, unlearner)."""
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ValueError(f"task names must differ, got {names}")
    return [Cell(t.name, s, u) for t in tasks for s in settings.scenarios for u in settings.resolved_unlearners()]


def run_order(cells: Sequence[Cell], settings: BenchSettings) -> list[Cell]:
    """``cells`` in the order a process runs them: one unlearner's cells of a task one after
    another, scenario by scenario. Its programs hold no forget rule and, under rows as data,
    few counts (``programs.stage_key``), so they serve its next scenario while the process
    still keeps them (``programs.MAX_ENTRIES``); in the table order (scenario by scenario)
    the other unlearners' cells in between pushed them out. Which cells a shard runs follows
    the table order (``plan_cells``), and no cell's result depends on the order."""
    unlearners, scenarios = settings.resolved_unlearners(), list(settings.scenarios)
    tasks = list(dict.fromkeys(c.task for c in cells))
    return sorted(
        cells, key=lambda c: (tasks.index(c.task), unlearners.index(c.unlearner), scenarios.index(c.scenario))
    )


def _raw_of(task: BenchTask) -> Any:
    from jaxunlearn.data.sources import load_dataset

    return task.raw if task.raw is not None else load_dataset(task.cfg.dataset, **dict(task.cfg.dataset_kwargs))


def run_cell(
    cell: Cell,
    task: BenchTask,
    raw: Any,
    settings: BenchSettings,
    out: Path,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Tunes and scores one cell; returns its record (also written to its file)."""
    from jaxunlearn.data.sources import build_task
    from jaxunlearn.study import run_study

    refs = out / "checkpoints" / task.name / _safe(cell.scenario)
    tune_rule, _ = cell_rule(cell.scenario, raw, TUNING_DRAW)
    score_rule, what = cell_rule(cell.scenario, raw, SCORE_DRAW)
    base = cell_base(cell, task)
    tune_cfg = tuning_config(dataclasses.replace(base, forget=tune_rule), seeds=settings.tune_seeds)
    tuning = tune(
        tune_cfg,
        settings.trials,
        task=build_task(raw, tune_rule),
        model=task.model,
        checkpoint_dir=refs / "tuning",
        progress=progress,
        log=log,
    )
    values = tuning.tuned_values()
    score_cfg = score_config(cell, task, settings, score_rule, values)
    y_std = float(np.std(np.asarray(raw.splits["train"][1], np.float64))) or 1.0
    requests: list[float] = []
    if cell.scenario == SEQUENTIAL:
        from jaxunlearn.sequential import run_sequential

        seq = run_sequential(
            score_cfg.replace(forget=None),
            cell.unlearner,
            SEQUENTIAL_REQUESTS,
            SEQUENTIAL_FRACTION,
            SCORE_DRAW,
            raw,
            task.model,
            progress,
            log,
        )
        last = seq.steps[-1].per_seed
        requests = [
            float(np.nanmean(gap_to_retrain(step.per_seed[cell.unlearner], step.per_seed["retrain"], y_std)))
            for step in seq.steps
        ]
        described: dict[str, Any] = {"requests": SEQUENTIAL_REQUESTS, "forgotten": seq.steps[-1].forgotten}
        seconds, compile_s, timings = seq.seconds, seq.compile_seconds, {}
    else:
        result = run_study(
            score_cfg,
            progress=progress,
            log=log,
            task=build_task(raw, score_rule),
            checkpoint_dir=refs / "score",
            model=task.model,
            save_unlearned=False,  # a cell resumes whole: only the reference models are kept
        )
        last, described, timings = result.per_seed, result.task, result.timings
        seconds = sum(t["wall"] for t in timings.values() if not t["loaded"])
        compile_s = sum(t["compile"] for t in timings.values() if not t["loaded"])
    per_seed = {row: {k: np.asarray(v, np.float64) for k, v in m.items()} for row, m in last.items()}
    for row in per_seed:
        per_seed[row]["score"] = gap_to_retrain(per_seed[row], per_seed["retrain"], y_std)
    if settings.seeds > 1:
        other = {k: np.roll(v, -1) for k, v in per_seed["retrain"].items()}
        floor = {k: np.full(settings.seeds, np.nan) for k in per_seed["retrain"]}  # only its score means anything
        per_seed[NOISE_FLOOR_ROW] = dict(floor, score=gap_to_retrain(per_seed["retrain"], other, y_std))
    record = {
        "cell": dataclasses.asdict(cell),
        "forgets": what,
        "rules": {"tuning": tune_rule, "score": score_rule},
        "tuned": values,
        "defaults_only": cell.unlearner in tuning.defaults_only,
        "tuning": tuning.to_dict(),
        "score_config": score_cfg.to_dict(),
        "task": described,
        "row": cell.unlearner,
        "per_seed": per_seed,
        "requests": requests,
        "timings": timings,
        "seconds": {
            "tuning": tuning.wall_seconds,
            "tuning_compile": tuning.compile_seconds,
            "score": seconds,
            "score_compile": compile_s,
        },
    }
    _write_record(cell.path(out), record)
    return record


def cell_base(cell: Cell, task: BenchTask) -> StudyConfig:
    """The task's study settings with the cell's unlearner alone and nothing swept."""
    return dataclasses.replace(task.cfg, unlearners=(cell.unlearner,), hp=(), sweep=(), trials=())


def score_config(
    cell: Cell, task: BenchTask, settings: BenchSettings, rule: str, values: dict[str, Any]
) -> StudyConfig:
    """The study that scores ``cell``: the task's settings, the scenario's scoring ``rule``,
    ``settings.seeds`` seeds, and the tuned ``values`` (``TuningResult.tuned_values``) over
    the task's own stage settings."""
    base = cell_base(cell, task)
    fixed = {stage: dict(fields) for stage, fields in base.settings}
    for stage, fields in values["settings"].items():
        fixed.setdefault(stage, {}).update(fields)
    return base.replace(forget=rule, seeds=settings.seeds, hp=values["hp"], settings=fixed)


def _write_record(path: Path, record: dict[str, Any]) -> None:
    """Writes a cell record atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(jsonable(record), indent=1) + "\n")
    os.replace(tmp, path)


def check_cell_config(record: dict[str, Any], cell: Cell, task: BenchTask, settings: BenchSettings) -> None:
    """Refuses a saved cell that this run's task and settings would not have scored alike.

    Raises:
        ValueError: the settings that differ (e.g. the epochs or the scoring seeds), and
            how to go on.
    """
    from jaxunlearn.checkpoints import config_diff

    current = score_config(cell, task, settings, record["rules"]["score"], record["tuned"]).to_dict()
    diff = config_diff(record["score_config"], current)
    if diff:
        raise ValueError(
            f"{cell.path(Path('.'))} was scored with other settings ({'; '.join(diff)}); rerun with that cell's "
            "settings, or use another --out"
        )


def needs_per_example(record: dict[str, Any], settings: BenchSettings) -> bool:
    """Whether a cell's record lacks the per-example tests ``settings`` ask for (none, or
    made with another N or another number of groups), or holds tests to rescore
    (``needs_rescoring``)."""
    if not settings.models:
        return False
    done = record.get("per_example") or {}
    return not same_models(done, settings) or needs_rescoring(done, settings)


def same_models(done: dict[str, Any], settings: BenchSettings) -> bool:
    """Whether stored per-example tests ``done`` trained the models ``settings`` ask for (the
    same N and groups): then they are kept, or rescored, never retrained."""
    return (done.get("models"), done.get("groups")) == (settings.models, settings.groups)


def needs_rescoring(done: dict[str, Any], settings: BenchSettings) -> bool:
    """Whether stored per-example tests were scored another way than ``settings`` score
    them now: with another grid unit (tests made before the setting existed used "target"),
    or without a metric their protocol's table now reports. ``add_per_example`` then
    rescores them from the saved models: nothing retrains."""
    if "neurips23" in done and done.get("grid_unit", "target") != settings.evaluation("neurips23").grid_unit:
        return True
    for protocol, rows in done.items():
        wanted = {c.key for c in PROTOCOL_COLUMNS.get(protocol, ())} - {"row"}
        if isinstance(rows, dict) and any(wanted - set(metrics) for metrics in rows.values()):
            return True
    return False


def add_per_example(
    cell: Cell,
    task: BenchTask,
    raw: Any,
    settings: BenchSettings,
    out: Path,
    record: dict[str, Any],
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Runs the per-example tests of a scored cell (``BenchSettings.models``) with its tuned
    values and scoring rows, and adds them to its record (rewritten atomically).

    Every block of models is kept under ``checkpoints/TASK/SCENARIO/PROTOCOL``: the original,
    the retrained sets and the control shadows are trained once per (task, scenario) and
    loaded by every other cell and later run. The record's ``per_example`` holds, per
    protocol, the metrics of the cell's row and of the controls (NeurIPS'23: the original
    and the second retrained set, the noise floor; U-LiRA: the original and retraining).
    """
    from jaxunlearn.data.sources import build_task
    from jaxunlearn.evaluation import run_evaluation
    from jaxunlearn.sequential import evaluate_sequential

    rule = record["rules"]["score"]
    cfg = score_config(cell, task, settings, rule, record["tuned"])
    refs = out / "checkpoints" / task.name / _safe(cell.scenario)
    earlier = record.get("per_example") or {}
    rescoring = same_models(earlier, settings)
    found: dict[str, Any] = {  # a rescoring (``needs_rescoring``) keeps the seconds of the training it loads
        "models": settings.models,
        "groups": settings.groups,
        "grid_unit": settings.evaluation("neurips23").grid_unit,
        "seconds": earlier.get("seconds", 0.0) if rescoring else 0.0,
        "compile": earlier.get("compile", 0.0) if rescoring else 0.0,
    }
    for protocol in settings.protocols(cell.scenario):
        folder = refs / protocol
        resume = (folder / "study.json").is_file()
        if cell.scenario == SEQUENTIAL:
            result, _ = evaluate_sequential(
                cfg,
                settings.evaluation(protocol),
                SEQUENTIAL_REQUESTS,
                SEQUENTIAL_FRACTION,
                SCORE_DRAW,
                raw,
                task.model,
                folder,
                resume,
                progress,
                log,
            )
        else:
            result, _ = run_evaluation(
                cfg,
                settings.evaluation(protocol),
                task=build_task(raw, rule),
                model=task.model,
                checkpoint_dir=folder,
                resume=resume,
                progress=progress,
                log=log,
            )
        found[protocol] = {row: result.metrics[row] for row in result.rows}
        ran = [t for t in result.timings.values() if not t.get("loaded")]
        found["seconds"] += sum(t["wall"] for t in ran)
        found["compile"] += sum(t["compile"] for t in ran)
    record = {**record, "per_example": found}
    _write_record(cell.path(out), record)
    return record


def cell_rule(spec: str, raw: Any, draw: int) -> tuple[str, str]:
    """(forget rule, what it forgets) of a cell's scenario for ``draw``: the scenario's
    rule, or for sequential requests the rule of one request (what tuning runs)."""
    if spec == SEQUENTIAL:
        what = (
            f"{SEQUENTIAL_REQUESTS} successive requests of {SEQUENTIAL_FRACTION:.1%} of each split's rows at random, "
            f"each unlearned from the models the previous one left (draw {draw}); scored after the last"
        )
        return f"random:{SEQUENTIAL_FRACTION:g}@{draw}", what
    return scenario_rule(spec, raw, draw)


def run_leaderboard(
    out: str | os.PathLike,
    tasks: Sequence[BenchTask],
    settings: BenchSettings = BenchSettings(),
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Runs this shard's missing cells, then rebuilds the leaderboard from every cell file.

    Bad input (unknown scenario or unlearner, a budget below 1, a shard out of range, a
    scenario that leaves nothing to forget or to retain on a task) fails before anything
    compiles.

    Returns:
        The leaderboard (``build_leaderboard``).
    """
    from jaxunlearn.data.sources import build_task
    from jaxunlearn.sequential import request_masks, sharded_unlearners
    from jaxunlearn.study import check_study

    out = Path(out).expanduser()
    cells = plan_cells(tasks, settings)
    by_name = {t.name: t for t in tasks}
    raws = {t.name: _raw_of(t) for t in tasks}
    skipped: set[Cell] = set()  # sharded unlearners under sequential requests (not supported)
    for t in tasks:  # every scenario's rows and every stage fit every task, for both draws
        for spec in settings.scenarios:
            for draw in (TUNING_DRAW, SCORE_DRAW):
                rule, _ = cell_rule(spec, raws[t.name], draw)
                cfg = t.cfg.replace(forget=rule, unlearners=settings.resolved_unlearners(), hp=(), sweep=(), trials=())
                try:
                    check_study(cfg, build_task(raws[t.name], rule), t.model)
                    if spec == SEQUENTIAL:
                        request_masks(raws[t.name], SEQUENTIAL_REQUESTS, SEQUENTIAL_FRACTION, draw)
                        for u in sharded_unlearners(cfg, build_task(raws[t.name], rule), t.model):
                            skipped.add(Cell(t.name, spec, u))
                except ValueError as err:
                    raise ValueError(f"task {t.name!r}, scenario {spec!r}: {err}") from err
    for cell in cells:  # a cell scored with other task settings (another --epochs, ...) is never mixed in
        if cell.path(out).is_file():
            check_cell_config(json.loads(cell.path(out).read_text()), cell, by_name[cell.task], settings)
    index, count = settings.shard
    for cell in sorted(skipped, key=cells.index):
        log(
            f"not run: {cell.task} / {cell.scenario} / {cell.unlearner} (a sharded unlearner: sequential requests "
            f"would need its shards' checkpoints)"
        )
    mine = run_order([c for k, c in enumerate(cells) if k % count == index and c not in skipped], settings)
    todo = [c for c in mine if not c.path(out).is_file()]
    log(f"leaderboard: {len(cells)} cells, {len(mine)} in shard {index}/{count}, {len(todo)} to run")
    for cell in mine:
        if cell in todo:
            log(f"cell {todo.index(cell) + 1}/{len(todo)}: {cell.task} / {cell.scenario} / {cell.unlearner}")
            record = run_cell(cell, by_name[cell.task], raws[cell.task], settings, out, progress, log)
        else:
            record = json.loads(cell.path(out).read_text())
        if needs_per_example(record, settings):
            same = same_models(record.get("per_example") or {}, settings)
            what = "tests rescored from the saved models" if same else "tests"
            log(f"per-example {what} ({settings.models} models): {cell.task} / {cell.scenario} / {cell.unlearner}")
            add_per_example(cell, by_name[cell.task], raws[cell.task], settings, out, record, progress, log)
    return write_leaderboard(out)


def read_cells(out: Path) -> list[dict[str, Any]]:
    """Every cell record under ``out/cells`` (sorted by path: the same order everywhere)."""
    records = []
    for path in sorted((out / "cells").glob("*/*/*.json")):
        records.append(json.loads(path.read_text()))
    return records


def build_leaderboard(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per (task, scenario) the unlearners ranked by mean gap score, and their mean ranks."""
    tables: dict[str, dict[str, Any]] = {}
    for record in records:
        c = record["cell"]
        key = f"{c['task']} / {c['scenario']}"
        entry = tables.setdefault(key, {"per_seed": {}, "defaults_only": [], "forgets": record["forgets"]})
        rows = record["per_seed"]
        name = c["unlearner"]
        entry["per_seed"][name] = rows[record["row"]]
        for ref in ("retrain", NOISE_FLOOR_ROW, "original"):
            if ref in rows:
                entry["per_seed"].setdefault(ref, rows[ref])
        if record["defaults_only"]:
            entry["defaults_only"].append(name)
        entry.setdefault("tuned", {})[name] = record["tuned"]
        if record.get("requests"):
            entry.setdefault("requests", {})[name] = record["requests"]
        if record.get("per_example"):
            tests = entry.setdefault("per_example", {"models": record["per_example"]["models"], "rows": {}})
            for row, metrics in per_example_rows(record).items():
                tests["rows"].setdefault(row, metrics)
    ranks: dict[str, list[int]] = {}
    f_ranks: dict[str, list[int]] = {}
    for entry in tables.values():
        entry["summary"] = summarise(entry["per_seed"])
        contenders = [r for r in entry["per_seed"] if r not in ("retrain", NOISE_FLOOR_ROW, "original")]
        order = sorted(contenders, key=lambda r: _mean(entry["summary"][r]["score"]))
        entry["ranking"] = order
        for rank, row in enumerate(order, start=1):
            ranks.setdefault(row, []).append(rank)
        tested = entry.get("per_example", {}).get("rows", {})
        entry["ranked_by_f"] = bool(contenders) and all(r in tested for r in contenders)
        if entry["ranked_by_f"]:  # ranked by F only where every contender has it
            by_f = sorted(contenders, key=lambda r: -tested[r].get("forgetting_quality", -math.inf))
            for rank, row in enumerate(by_f, start=1):
                f_ranks.setdefault(row, []).append(rank)
    mean_rank = {u: float(np.mean(r)) for u, r in ranks.items()}
    mean_f_rank = {u: float(np.mean(r)) for u, r in f_ranks.items()}
    keys = ("tuning", "tuning_compile", "score", "score_compile")
    seconds = {k: sum(r["seconds"][k] for r in records) for k in keys}
    seconds["per_example"] = sum((r.get("per_example") or {}).get("seconds", 0.0) for r in records)
    seconds["per_example_compile"] = sum((r.get("per_example") or {}).get("compile", 0.0) for r in records)
    return {
        "tables": tables,
        "mean_rank": mean_rank,
        "mean_rank_by_f": mean_f_rank,
        "cells": len(records),
        "seconds": seconds,
    }


def per_example_rows(record: dict[str, Any]) -> dict[str, dict[str, float]]:
    """{row: metrics} of a cell's per-example tests: the cell's unlearner and the controls
    (``PER_EXAMPLE_CONTROLS``), NeurIPS'23 metrics as they are, U-LiRA's prefixed ``ulira_``."""
    tests = record.get("per_example") or {}
    sources = {record["row"]: (record["row"], record["row"]), **PER_EXAMPLE_CONTROLS}
    rows: dict[str, dict[str, float]] = {}
    for name, (neurips_row, ulira_row) in sources.items():
        metrics: dict[str, float] = {}
        if "neurips23" in tests:
            metrics.update(tests["neurips23"][neurips_row])
        if "ulira" in tests:
            metrics.update({f"ulira_{k}": v for k, v in tests["ulira"][ulira_row].items()})
        rows[name] = metrics
    return rows


def _mean(summary: dict[str, Any]) -> float:
    return math.inf if summary["mean"] is None else float(summary["mean"])


def format_leaderboard(board: dict[str, Any]) -> str:
    """The leaderboard as Markdown: per (task, scenario) a ranked table, then mean ranks."""
    parts = ["# Leaderboard", ""]
    sec = board["seconds"]
    tests = sec.get("per_example", 0.0)
    train = sec["tuning"] + sec["score"] + tests
    if train > 0:
        share = (sec["tuning_compile"] + sec["score_compile"] + sec.get("per_example_compile", 0.0)) / train
        parts += [
            f"{board['cells']} cells; training and unlearning took {train:.0f} s ({sec['tuning']:.0f} s tuning, "
            f"{sec['score']:.0f} s scores, {tests:.0f} s per-example tests), {share:.0%} of it compiling "
            "(metrics apart).",
            "",
        ]
    mean_rank, by_f = board["mean_rank"], board.get("mean_rank_by_f", {})
    if mean_rank:
        parts += ["## Mean rank over every task and scenario (lower is better)", ""]
        if by_f:
            parts += [
                "By the gap to retraining (the tables' order), and by the NeurIPS'23 forgetting quality F over the "
                "tables that have it.",
                "",
                "| unlearner | mean rank | cells | mean rank by F | tables ranked by F |",
                "|---|---:|---:|---:|---:|",
            ]
        else:
            parts += ["| unlearner | mean rank | cells |", "|---|---:|---:|"]
        counts = {u: sum(u in e["ranking"] for e in board["tables"].values()) for u in mean_rank}
        f_counts = {
            u: sum(bool(e.get("ranked_by_f")) and u in e["ranking"] for e in board["tables"].values()) for u in by_f
        }
        for u in sorted(mean_rank, key=lambda u: (mean_rank[u], u)):
            line = f"| {u} | {mean_rank[u]:.2f} | {counts[u]} |"
            if by_f:
                line += f" {by_f[u]:.2f} | {f_counts[u]} |" if u in by_f else " n/a | 0 |"
            parts.append(line)
        parts.append("")
    for key, entry in board["tables"].items():
        rows = [*entry["ranking"], *(r for r in (NOISE_FLOOR_ROW, "retrain", "original") if r in entry["per_seed"])]
        ranked = {r: f"{i}. {r}" for i, r in enumerate(entry["ranking"], start=1)}
        summary = {ranked.get(r, r): entry["summary"][r] for r in rows}
        parts += [f"## {key}", "", f"Forgets {entry['forgets']}.", ""]
        parts.append(
            format_table(summary, [ranked.get(r, r) for r in rows], COLUMNS, plain=("time_vs_retrain",), spread="ci95")
        )
        if entry.get("requests"):
            parts += ["", "Gap to retraining after each request (mean over seeds):", ""]
            for row in entry["ranking"]:
                if row in entry["requests"]:
                    parts.append(f"- {row}: " + " -> ".join(f"{v:.3f}" for v in entry["requests"][row]))
        if entry.get("per_example"):
            tested = entry["per_example"]["rows"]
            n = entry["per_example"]["models"]
            shown = [r for r in entry["ranking"] if r in tested] + [r for r in PER_EXAMPLE_CONTROLS if r in tested]
            columns = [c for c in PER_EXAMPLE_COLUMNS if any(c[0] in tested[r] for r in shown)]
            parts += [
                "",
                f"Per-example tests ({n} models per row; docs/EVALUATION.md): F of {n} models unlearned from one "
                f"original against {n} retrained ones; the noise floor is a second {n} retrained; U-LiRA (random rows "
                f"only) on {n} shadows per row.",
                "",
                markdown_table(shown, tested, columns),
            ]
        if entry["defaults_only"]:
            parts += ["", f"Scored at their defaults (no search space declared): {', '.join(entry['defaults_only'])}."]
        parts.append("")
    return "\n".join(parts)


def leaderboard_figure(board: dict[str, Any]):
    """Cost against forgetting: one panel per (task, scenario), each unlearner at its mean
    time against retraining (x, log scale) and its mean gap to retraining with the 95% CI
    (y); the shaded band is the noise floor's CI (an exact unlearner's score).

    Returns:
        a ``matplotlib.figure.Figure``.
    """
    from jaxunlearn.plots import check_plots_available, new_figure

    check_plots_available()  # the `plots` extra, named in the error, before matplotlib is imported
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    keys = list(board["tables"])
    cols = min(4, len(keys))
    lines = -(-len(keys) // cols)
    fig = new_figure(1.2 + 3.4 * cols, 2.9 * lines)
    axes = np.atleast_1d(fig.subplots(lines, cols, squeeze=False)).ravel()
    names = sorted(board["mean_rank"])
    colours = {u: f"C{i % 10}" for i, u in enumerate(names)}
    for ax, key in zip(axes, keys, strict=False):
        entry = board["tables"][key]
        floor = entry["summary"].get(NOISE_FLOOR_ROW, {}).get("score") or {}
        if floor.get("mean") is not None:
            low, high = floor["mean"] - (floor.get("ci95") or 0.0), floor["mean"] + (floor.get("ci95") or 0.0)
            ax.axhspan(low, high, color="0.85", label="noise floor (95% CI)")
        for row in entry["ranking"]:
            score, cost = entry["summary"][row]["score"], entry["summary"][row].get("time_vs_retrain") or {}
            if score.get("mean") is None or not cost.get("mean"):
                continue
            ax.errorbar(
                cost["mean"], score["mean"], yerr=score.get("ci95") or 0.0, fmt="o", color=colours[row], capsize=3
            )
        ax.set_xscale("log")
        costs = [entry["summary"][r].get("time_vs_retrain", {}).get("mean") or math.nan for r in entry["ranking"]]
        if np.isfinite(costs).any():  # a factor 4 around the points always holds a 1-2-5 tick
            ax.set_xlim(np.nanmin(costs) / 2, np.nanmax(costs) * 2)
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(key, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes[len(keys) :]:
        ax.set_visible(False)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", linestyle="", color=colours[u], label=u) for u in names]
    fig.legend(handles=handles, loc="outside right center", fontsize=8, title="noise floor: grey", title_fontsize=7)
    fig.supxlabel("time / retraining (compile apart, log scale)", fontsize=9)
    fig.supylabel("gap to retraining (lower is better)", fontsize=9)
    fig.suptitle("Cost against forgetting: mean over seeds ± 95% CI", fontsize=10)
    return fig


def write_leaderboard(out: str | os.PathLike) -> dict[str, Any]:
    """Rebuilds ``leaderboard.md``, ``leaderboard.json`` and, with matplotlib installed, the
    cost-against-forgetting figure ``leaderboard.png`` in ``out`` from its cell files."""
    out = Path(out).expanduser()
    board = build_leaderboard(read_cells(out))
    out.mkdir(parents=True, exist_ok=True)
    (out / "leaderboard.json").write_text(json.dumps(jsonable(board), indent=1) + "\n")
    (out / "leaderboard.md").write_text(format_leaderboard(board) + "\n")
    if board["tables"] and find_spec("matplotlib") is not None:  # the figure needs the `plots` extra
        from jaxunlearn.plots import save_figure

        save_figure(leaderboard_figure(board), out / FIGURE_FILE, dpi=110)
    return board


def merge_leaderboards(sources: Sequence[str | os.PathLike], into: str | os.PathLike) -> dict[str, Any]:
    """Copies the cell files of several shards' folders into ``into`` and rebuilds the
    leaderboard there. A cell found in two folders must hold the same record.

    Raises:
        ValueError: a source without cells, or two different records of one cell.
    """
    into = Path(into).expanduser()
    for source in map(Path, sources):
        cells = sorted((source / "cells").glob("*/*/*.json"))
        if not cells:
            raise ValueError(f"merge: {source} holds no cell results (cells/TASK/SCENARIO/UNLEARNER.json)")
        for path in cells:
            target = into / path.relative_to(source)
            if target.is_file() and target.resolve() != path.resolve():
                if measured(json.loads(target.read_text())) != measured(json.loads(path.read_text())):
                    raise ValueError(f"merge: {path} and {target} hold different results for one cell")
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.resolve() != path.resolve():
                shutil.copyfile(path, target)
    return write_leaderboard(into)


def measured(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A cell record's per-seed metrics without its timings: what two runs of the cell on
    one machine reproduce bitwise."""
    return {row: {k: v for k, v in m.items() if k not in TIMING_METRICS} for row, m in record["per_seed"].items()}
