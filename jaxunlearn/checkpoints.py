"""Stage checkpoints of a study (orbax), so finished work survives a killed process.

Each finished stage (the original model, retraining, each unlearner) is saved as its
TrainState stacked over seeds, under ``<root>/<row>-<key>/`` (a row is a stage, or one
value of a swept stage: ``jaxunlearn.hparams``): an orbax ``state/`` folder and a
``meta.json`` (timings, per-epoch history, divergence). The key hashes everything the
row's result depends on: the settings that shape its training (not those only another
unlearner reads), its float hyperparameters, a fingerprint of the task's arrays, and the
user's own code: a user's model is named in the configuration with a digest of its class's
source (``jaxunlearn.models.user.describe_model``) and a plug-in unlearner's rows carry a
digest of its factory's (``CheckpointStore.stage_code``; ``jaxunlearn.identity``), so
editing either retrains instead of reusing stale weights. A
stage is written into a hidden temporary folder and renamed into place only when
complete, so a folder with the final name is always whole and a killed write leaves only
a temporary folder, which is never read and is removed later.

Loading restores arrays into a structure built by the library (``jax.eval_shape`` of a
fresh state); it never unpickles or executes anything from the files.

Under ``jax.distributed`` (a shared file system) every process reads the manifest, writes
its own seeds' blocks through orbax and restores the blocks its devices hold; the main
process alone writes the manifest and metadata and commits a stage by the rename, between
barriers.

``<root>/study.json`` records the configuration and data fingerprint of the last study
that used the folder, so ``--resume`` can refuse checkpoints of another configuration.

Each stage's ``meta.json`` also records a fingerprint of the library code that trains
models (``training_code_fingerprint``: jaxunlearn's own code, not the user's). It is not
part of the key: checkpoints stay usable across versions that train the same way, but
loading one written by other training code logs a warning naming the folder to delete
(``CheckpointStore.code_warning``).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxunlearn import unlearn
from jaxunlearn.config import StudyConfig
from jaxunlearn.data.arrays import Task
from jaxunlearn.distributed import barrier, is_main_process, same_on_every_process
from jaxunlearn.hparams import study_variants
from jaxunlearn.report import atomic_write_text
from jaxunlearn.runner import StageResult

# 2: a stage's state is saved without its optimizer state (``train.state.finished``); a
# checkpoint of format 1 has another key, so it is never found, and the stage retrains.
FORMAT_VERSION = 2
# Stages reused whenever a study with the same settings runs again; the unlearners' are
# reused only by --resume (and kept after the study only on request).
REUSED_STAGES = ("original", "retrain")
# Settings that change no stage's trained weights (only the metrics or which stages run).
# "devices" only says where the seeds run: each seed's arithmetic is the same (weights agree
# to float rounding), so a study can resume on a machine with another device count.
# "hp", "sweep" and "trials" enter each row's key as that row's own hyperparameters, and "settings"
# as the row's own unlearner's settings only (so e.g. a new ``--set NAME.epochs`` of one
# unlearner reuses the original and retrained models and every other unlearner's rows).
_NOT_TRAINING = (
    "unlearners",
    "relearn_lr",
    "relearn_max_epochs",
    "relearn_alpha",
    "mia_samples",
    "mia_models",
    "mia_units",
    "stand_in",
    "devices",
    "hp",
    "sweep",
    "trials",
    "settings",
)
# The package's modules whose code shapes a stage's trained weights (paths in jaxunlearn/).
TRAINING_CODE = ("config.py", "data", "models", "runner.py", "seeds.py", "train", "unlearn")
# A stage run in several calls of seeds saves each call's seeds as "ROW#seedsA-B" (seeds
# A..B-1), so a kill loses at most one call; the parts are deleted once the row is saved.
CHUNK_MARK = "#seeds"
# A stage run as several programs (a sharded stage's slice stages) saves each as
# "ROW#PART", so a kill loses at most the part that was running.
PART_MARK = "#"


def chunk_name(row: str, start: int, stop: int) -> str:
    """The checkpoint name of seeds ``start .. stop - 1`` of ``row`` (a part of a stage)."""
    return f"{row}{CHUNK_MARK}{start}-{stop}"


# Testing hook: kill the process after a stage's files are written but before the rename
# that commits them (the fault tests set it in a child process).
KILL_BEFORE_COMMIT_ENV = "JAXUNLEARN_TEST_KILL_BEFORE_COMMIT"


@functools.lru_cache(maxsize=8)
def code_fingerprint(paths: tuple[str, ...]) -> str:
    """SHA-256 (16 hex digits) over the source of the package's files and folders ``paths``
    (relative to jaxunlearn/), read once per process."""
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in paths:
        path = package / name
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(file.relative_to(package).as_posix().encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def training_code_fingerprint() -> str:
    """``code_fingerprint`` of ``TRAINING_CODE``: changes when any code that could change
    trained weights changes (and with comments, too: a false alarm is cheaper than silently
    reusing stale weights)."""
    return code_fingerprint(TRAINING_CODE)


def _library_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("jaxunlearn")
    except PackageNotFoundError:
        return "unknown"


def data_fingerprint(task: Task) -> str:
    """SHA-256 over every array of the task (inputs, targets, forget masks, statistics)."""
    digest = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(task):
        arr = np.ascontiguousarray(np.asarray(leaf))
        digest.update(f"{arr.dtype}{arr.shape}".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


def training_settings(cfg: StudyConfig, stage: str | None = None) -> dict[str, Any]:
    """The configuration fields that can change a trained stage's weights: the study-wide
    ones, and with ``stage`` that stage's own resolved settings (defaults included, as
    ``"settings"``; absent for a stage without settings)."""
    out = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_TRAINING}
    if stage is not None:
        resolved = cfg.resolved_settings(stage)
        if resolved is not None:
            out["settings"] = dataclasses.asdict(resolved)
    return out


# Settings that only choose which rows a study has: --resume may change them (a wider sweep,
# another unlearner), since every row's checkpoint key says exactly what it holds.
_ROW_SELECTION = ("unlearners", "hp", "sweep", "trials", "settings")


def config_diff(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The settings that differ; a setting added to StudyConfig after ``saved`` was written
    counts as its default there, and one since removed is ignored."""
    current = json.loads(json.dumps(current, default=str))  # tuples -> lists, as saved
    defaults = json.loads(json.dumps(StudyConfig().to_dict(), default=str))
    saved = {**{k: v for k, v in defaults.items() if k not in saved}, **saved}
    keys = sorted(set(current) - set(_ROW_SELECTION))
    return [f"{k}: {saved.get(k)!r} there, {current.get(k)!r} now" for k in keys if saved.get(k) != current.get(k)]


class CheckpointStore:
    """Saves and loads the stages of one study configuration under ``root``.

    Args:
        root: the checkpoint folder (created if needed).
        cfg: the study's settings; fingerprint: ``data_fingerprint`` of its task.
    """

    def __init__(self, root: str | os.PathLike, cfg: StudyConfig, fingerprint: str):
        self.root = Path(root).expanduser()
        self.cfg, self.fingerprint = cfg, fingerprint
        self.rows = {v.row: v for v in study_variants(cfg)}
        # Each stage's code identity, read once (a plug-in edited during the study does not
        # change the keys its rows are saved under) and before anything trains.
        self.code: dict[str, Any] = {}
        for variant in self.rows.values():
            self.stage_code(variant.stage)

    def stage_code(self, stage: str) -> dict[str, Any]:
        """``{"code": identity}`` of a plug-in stage's factory (``Unlearner.code_identity``),
        part of its rows' keys; ``{}`` for the library's own stages.

        Raises:
            IdentityError: the factory holds a value that cannot be described.
        """
        if stage not in self.code:
            self.code[stage] = unlearn.get(stage).code_identity()
        return {} if self.code[stage] is None else {"code": self.code[stage]}

    # ---------------------------------------------------------------- study manifest
    def _manifest(self) -> dict[str, Any]:
        return {"format": FORMAT_VERSION, "config": self.cfg.to_dict(), "data_fingerprint": self.fingerprint}

    def begin(self, resume: bool) -> bool:
        """Prepares the folder for a study; with ``resume`` checks it holds this study.

        Returns:
            False when ``resume`` found no study to resume (a study killed before its
            first save): it then starts from the beginning.

        Raises:
            ValueError: ``resume`` and the folder holds a study of another configuration
                or other data (the message lists the differences). Which unlearners run
                and their hyperparameters (``hp``, ``sweep``) may change: the rows found
                are reused, the others run.
        """
        path = self.root / "study.json"
        found = path.is_file()
        if resume and found:
            saved = self._read_json(path)
            if saved.get("data_fingerprint") != self.fingerprint:
                raise ValueError(
                    f"--resume: the checkpoints in {self.root} were made from different data "
                    "(the data fingerprint differs); run without --resume to start afresh"
                )
            diff = config_diff(saved.get("config", {}), self.cfg.to_dict())
            if diff:
                raise ValueError(
                    f"--resume: the checkpoints in {self.root} are from another configuration; "
                    f"it differs in {'; '.join(diff)}"
                )
        barrier("jaxunlearn: checkpoint manifest read")
        if is_main_process():
            self.root.mkdir(parents=True, exist_ok=True)
            self.remove_abandoned()
            atomic_write_text(path, json.dumps(self._manifest(), indent=2) + "\n")
        barrier("jaxunlearn: checkpoint manifest written")
        return found

    @staticmethod
    def _read_json(path: Path) -> dict[str, Any]:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(
                f"checkpoint file {path} is unreadable or corrupt ({err}); delete it to start afresh"
            ) from err

    # ---------------------------------------------------------------- stages
    def settings(self, row: str) -> dict[str, Any]:
        """What the row's weights depend on: its stage's settings and hyperparameters, and a
        plug-in's code (``stage_code``); for a part of a row (``chunk_name``), also its seeds."""
        row, mark, seeds = row.partition(CHUNK_MARK)
        row, step, part = row.partition(PART_MARK)
        if row not in self.rows:
            raise ValueError(f"no row {row!r} in this study; its rows: {list(self.rows)}")
        variant = self.rows[row]
        return {
            "settings": training_settings(self.cfg, variant.stage),
            "hp": variant.resolved_hp(),
            **self.stage_code(variant.stage),
            **({"part": part} if step else {}),
            **({"seeds": seeds} if mark else {}),
        }

    def key(self, row: str) -> str:
        blob = json.dumps(
            {"format": FORMAT_VERSION, "stage": row, **self.settings(row), "data": self.fingerprint},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def path(self, row: str) -> Path:
        return self.root / f"{re.sub(r'[^A-Za-z0-9_.=-]', '_', row)}-{self.key(row)}"

    def load(self, stage: str, abstract_state: Any) -> StageResult | None:
        """The saved stage, or None if it was never completed.

        Args:
            abstract_state: ``jax.ShapeDtypeStruct`` tree of the stacked state [S, ...].

        Raises:
            ValueError: the folder holds a checkpoint of another configuration or a
                corrupt one (never silently used).
        """
        folder = self.path(stage)
        if not folder.is_dir():
            return None
        meta = self._read_json(folder / "meta.json")
        if meta.get("key") != self.key(stage) or meta.get("data_fingerprint") != self.fingerprint:
            raise ValueError(
                f"checkpoint {folder} belongs to another configuration or other data; "
                "delete it or use another --checkpoint-dir"
            )
        import orbax.checkpoint as ocp

        try:
            state = ocp.StandardCheckpointer().restore((folder / "state").resolve(), abstract_state)
        except Exception as err:  # orbax raises many kinds for missing/mismatched arrays
            raise ValueError(
                f"checkpoint {folder} does not match this study's model or seed count "
                f"({type(err).__name__}: {str(err).splitlines()[0][:200]}); delete it to retrain"
            ) from err
        return StageResult(
            state=state,
            history={k: np.asarray(v, np.float64) for k, v in meta["history"].items()},
            wall=meta["wall"],
            compile=meta["compile"],
            run=meta["run"],
            diverged_at=np.asarray(meta["diverged_at"], np.int64),
            phase_names=tuple(meta["phase_names"]),
            members=int(meta.get("members", 1)),
            aggregate=meta.get("aggregate", "mean"),
        )

    def code_warning(self, row: str) -> str | None:
        """A warning when the saved ``row`` was trained by other library code than this
        (``training_code_fingerprint``), else None."""
        meta = self._read_json(self.path(row) / "meta.json")
        saved = meta.get("library", {})
        if saved.get("training_code") == training_code_fingerprint():
            return None
        written = (
            f"jaxunlearn {saved.get('version')}, training code {saved.get('training_code')}"
            if saved
            else "a jaxunlearn that did not record its training code"
        )
        return (
            f"{row}: the checkpoint was written by {written}; this is jaxunlearn {_library_version()}, training "
            f"code {training_code_fingerprint()}. If that change alters training, its weights are not what this "
            f"version trains: delete {self.path(row)} (or use another --checkpoint-dir) to retrain it"
        )

    def save(self, stage: str, result: StageResult) -> Path:
        """Writes ``result`` into a temporary folder, then renames it into place."""
        import orbax.checkpoint as ocp

        final = self.path(stage)
        pid, token = same_on_every_process(np.array([os.getpid(), uuid.uuid4().int % 2**31], np.int32))
        tmp = self.root / f".tmp-{final.name}-{pid}-{token:08x}"  # the main process's id: see remove_abandoned
        main = is_main_process()
        if main:
            tmp.mkdir(parents=True)
        barrier(f"jaxunlearn: {tmp.name} created")
        try:
            checkpointer = ocp.StandardCheckpointer()
            checkpointer.save((tmp / "state").resolve(), result.state)
            checkpointer.wait_until_finished()
            barrier(f"jaxunlearn: {tmp.name} written")
            if main:
                self._commit(stage, result, tmp, final)
            barrier(f"jaxunlearn: {final.name} committed")
        except BaseException:
            if main:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def _commit(self, stage: str, result: StageResult, tmp: Path, final: Path) -> None:
        """Adds the metadata to the written ``tmp`` folder and renames it to ``final``."""
        meta = {
            "format": FORMAT_VERSION,
            "stage": stage,
            "key": self.key(stage),
            "data_fingerprint": self.fingerprint,
            **self.settings(stage),
            "wall": result.wall,
            "compile": result.compile,
            "run": result.run,
            "history": {k: np.asarray(v).tolist() for k, v in result.history.items()},
            "diverged_at": np.asarray(result.diverged_at).tolist(),
            "phase_names": list(result.phase_names),
            "members": result.members,
            "aggregate": result.aggregate,
            "library": {"version": _library_version(), "training_code": training_code_fingerprint()},
        }
        atomic_write_text(tmp / "meta.json", json.dumps(meta) + "\n")
        if os.environ.get(KILL_BEFORE_COMMIT_ENV) == stage:
            os.kill(os.getpid(), 9)
        if final.exists():  # an identical stage committed meanwhile (same key = same content)
            shutil.rmtree(tmp)
        else:
            os.rename(tmp, final)

    def remove_abandoned(self) -> None:
        """Deletes temporary folders left by killed writers (whose process no longer runs)."""
        for tmp in self.root.glob(".tmp-*"):
            try:
                pid = int(tmp.name.rsplit("-", 2)[1])
                os.kill(pid, 0)  # raises if no such process
                if pid != os.getpid():
                    continue  # another live writer's folder
            except (ValueError, IndexError, ProcessLookupError):
                pass
            except PermissionError:
                continue
            shutil.rmtree(tmp, ignore_errors=True)


class StageParts:
    """The checkpoints of a stage's calls of seeds (``chunk_name``): each call's seeds are
    saved as it ends, loaded again by a rerun that may reuse them, and deleted once every
    row of the stage is saved whole. ``load``/``save`` are ``run_in_chunks``'s hooks.

    Args:
        store: the checkpoint store, or None (then nothing is saved or loaded).
        label: the stage's name in log lines; rows: the rows the stage's calls compute
            (one per hyperparameter value), in order.
        reuse: whether saved parts may be loaded (reused stages, or ``--resume``).
        abstract: seeds -> the restore target of that many seeds' states, or None for
            the default placement.
        total: the stage's seed count (for log lines); log: one-line messages.
    """

    def __init__(
        self,
        store: CheckpointStore | None,
        label: str,
        rows: list[str],
        reuse: bool,
        abstract: Any,
        total: int,
        log: Any,
    ):
        self.store, self.label, self.rows, self.reuse = store, label, rows, reuse
        self.abstract, self.total, self.log = abstract, total, log
        self.ranges: list[tuple[int, int]] = []

    def load(self, start: int, stop: int) -> list[StageResult] | None:
        self.ranges.append((start, stop))
        if self.store is None or not self.reuse:
            return None
        target = self.abstract(stop - start)  # None: restored as saved, placed by the next call
        found = [self.store.load(chunk_name(row, start, stop), target) for row in self.rows]
        if any(r is None for r in found):
            return None
        self.log(f"{self.label}: seeds {start}-{stop - 1} loaded from {self.store.root} (saved by an earlier run)")
        return found  # type: ignore[return-value]

    def save(self, start: int, stop: int, results: list[StageResult]) -> None:
        if self.store is None:
            return
        for row, result in zip(self.rows, results, strict=True):
            self.store.save(chunk_name(row, start, stop), result)
        self.log(f"{self.label}: seeds {start}-{stop - 1} of {self.total} done and saved")

    def discard(self) -> None:
        """Deletes the parts (call it once the rows are saved whole)."""
        if self.store is None:
            return
        for start, stop in self.ranges:
            for row in self.rows:
                discard_checkpoint(self.store.path(chunk_name(row, start, stop)))


class RowParts:
    """The whole-program parts of a row computed as several programs (a sharded stage's
    slice stages, ``jaxunlearn.shards``): each is saved as ``ROW#PART`` as it ends, loaded
    again by a rerun that may reuse it, and deleted once the row is saved whole.

    Args:
        store: a ``CheckpointStore`` (or an evaluation's), or None (nothing saved or loaded).
        row: the row; reuse: whether saved parts may be loaded (``--resume``).
        target: models -> the restore target of that many models' states.
        log: one-line messages.
    """

    def __init__(self, store: CheckpointStore | None, row: str, reuse: bool, target: Any, log: Any):
        self.store, self.row, self.reuse, self.target, self.log = store, row, reuse, target, log
        self.labels: list[str] = []

    def run(self, part: str, models: int, compute: Any) -> StageResult:
        """Part ``part`` of ``models`` models: loaded when saved and reusable, else
        ``compute(label)`` (label: the part's checkpoint name), then saved."""
        label = f"{self.row}{PART_MARK}{part}"
        self.labels.append(label)
        if self.store is not None and self.reuse:
            found = self.store.load(label, self.target(models))
            if found is not None:
                self.log(f"{label}: loaded (saved by an earlier run)")
                return found
        result = compute(label)
        if self.store is not None:
            self.store.save(label, result)
        return result

    def discard(self) -> None:
        """Deletes the parts (call it once the row is saved whole)."""
        if self.store is None:
            return
        for label in self.labels:
            discard_checkpoint(self.store.path(label))


def discard_checkpoint(folder: str | os.PathLike[str]) -> None:
    """Deletes a committed stage folder (e.g. an unlearned model not asked to be kept) so
    that a kill at any moment leaves it whole or gone: it is first renamed, atomically, to
    a hidden temporary name that ``CheckpointStore.remove_abandoned`` also clears, and only
    then deleted file by file."""
    folder = Path(folder)
    doomed = folder.parent / f".tmp-{folder.name}-{os.getpid()}-{uuid.uuid4().int % 2**31:08x}"
    try:
        os.rename(folder, doomed)
    except FileNotFoundError:
        return
    shutil.rmtree(doomed, ignore_errors=True)
