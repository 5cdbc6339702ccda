"""Bad input is rejected before any compute, with a message naming the field and what works.

Every case is one row of docs/BAD_INPUT.md; ``test_docs_table_is_current`` renders the
table from the messages actually raised, so the documentation cannot drift. To refresh it
after changing a message: ``JAXUNLEARN_WRITE_DOCS=1 python -m pytest tests/test_bad_input.py``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import numpy as np
import pytest

from jaxunlearn.cli import main
from jaxunlearn.data.forget_rules import Indices, Mask
from jaxunlearn.data.sources import RawData, build_task, load_dataset, make_synthetic
from tests.helpers import TINY_RUN_ARGS

DOC = Path(__file__).resolve().parent.parent / "docs" / "BAD_INPUT.md"
TINY = [*TINY_RUN_ARGS, "--batch-size", "64", "--no-progress"]

_compiles = [0]


def _count_compiles(event: str, duration: float, **kwargs) -> None:
    if event == "/jax/core/compile/backend_compile_duration":
        _compiles[0] += 1


jax.monitoring.register_event_duration_secs_listener(_count_compiles)


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad input: what the user gave, how to trigger it, a fragment the message must hold."""

    name: str
    given: str
    expect: str
    cli: tuple[str, ...] = ()
    call: Callable[[Path], None] | None = None
    files: Callable[[Path], None] | None = None  # writes input files into the test's folder first


def _raw(changes: dict) -> RawData:
    raw = make_synthetic(n=300, dim=4)
    splits = {k: (x.copy(), y.copy()) for k, (x, y) in raw.splits.items()}
    for (split, field), value in changes.items():
        x, y = splits[split]
        splits[split] = (value, y) if field == "x" else (x, value)
    return dataclasses.replace(raw, splits=splits)


def _with_nan(split, field, value=np.nan):
    def call(_):
        x, y = make_synthetic(n=300, dim=4).splits[split]
        arr = (x if field == "x" else y).astype(np.float64).copy()
        arr.flat[7] = value
        build_task(_raw({(split, field): arr}))

    return call


def _rule(rule):
    return lambda _: build_task(make_synthetic(n=300, dim=4), rule)


def _drop_split(_):
    raw = make_synthetic(n=300, dim=4)
    build_task(dataclasses.replace(raw, splits={k: v for k, v in raw.splits.items() if k != "val"}))


def _other_study(folder: Path) -> None:
    """A checkpoint folder holding a study of another configuration on the same data."""
    from jaxunlearn.checkpoints import CheckpointStore, data_fingerprint
    from jaxunlearn.config import StudyConfig

    task = build_task(load_dataset("synthetic"))
    other = StudyConfig(
        dataset="synthetic", model_kwargs=(("hidden", (16, 16)),), seeds=3, train_epochs=2, batch_size=64
    )
    CheckpointStore(folder / "ckpt", other, data_fingerprint(task)).begin(resume=False)


class OwnNet(nn.Module):
    """A user's own model, whose field names it in checkpoint keys."""

    scale: Any = 1.0

    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(x)


class Opaque:
    """An object with the default repr, which holds its memory address."""

    __module__ = "my_model"


class Tensor:
    """Another framework's array, whose repr leaves elements out."""

    __module__ = "other_framework"

    def __repr__(self):
        return "tensor([0.0000, 0.0010, 0.0020,  ..., 4.9970, 4.9980, 4.9990])"


def _own_model(scale: Any) -> None:
    """``run_study`` of a user's model with the field ``scale``, up to where it is named."""
    from jaxunlearn.config import StudyConfig
    from jaxunlearn.study import run_study

    run_study(StudyConfig(dataset="synthetic", seeds=2), progress=False, log=lambda m: None, model=OwnNet(scale))


def _evaluate(protocol: str, sweep: dict | None = None, **evaluation) -> None:
    """``jaxunlearn evaluate`` up to the point where models would start training."""
    from jaxunlearn.config import StudyConfig
    from jaxunlearn.evaluation import EvaluationConfig, check_evaluation

    check_evaluation(StudyConfig(dataset="synthetic", sweep=sweep or {}), EvaluationConfig(protocol, **evaluation))


def _command(*argv: str) -> int:
    """One ``jaxunlearn`` command called directly (the CLI's ``main`` turns its ValueError into exit 2)."""
    from jaxunlearn import cli

    commands = {"evaluate": cli.command_evaluate, "plots": cli.command_plots}
    return commands[argv[0]](cli.build_parser().parse_args(list(argv)))


def _write(name: str, text: str):
    return lambda folder: (folder / name).write_text(text)


# A plugin file registering one unlearner (bad in one way per case).
_PLUGIN = """from jaxunlearn.unlearn import Unlearner, register
{make}
register(Unlearner({name!r}, make, {hp}))
"""
_MAKE = "def make(model, task, cfg, plan, settings): pass"
N = make_synthetic(n=300, dim=4).splits["train"][1].shape[0]
CASES = [
    Case("unknown dataset", "--dataset nope", "unknown dataset 'nope'; known datasets:", cli=("--dataset", "nope")),
    Case("unknown model", "--model nope", "unknown model 'nope'; known models:", cli=("--model", "nope")),
    Case(
        "unknown unlearner",
        "--unlearners finetune,nope",
        "unknown unlearner(s) ['nope']; choose from",
        cli=("--unlearners", "finetune,nope"),
    ),
    Case("unknown loss", "--loss huber", "unknown loss 'huber'; known losses:", cli=("--loss", "huber")),
    Case("unknown stand-in", "--stand-in nope", "unknown stand_in 'nope'; known datasets:", cli=("--stand-in", "nope")),
    Case("zero seeds", "--seeds 0", "seeds must be a positive integer, got 0", cli=("--seeds", "0")),
    Case(
        "zero seeds per call",
        "--chunk 0",
        "chunk must be a positive integer (seeds per call) or None, got 0",
        cli=("--chunk", "0"),
    ),
    Case(
        "no model to attack",
        "--attack-models 0",
        "mia_models must be a positive integer or None (every seed), got 0",
        cli=("--attack-models", "0"),
    ),
    Case("negative epochs", "--epochs -1", "train_epochs must be a positive integer, got -1", cli=("--epochs", "-1")),
    Case(
        "zero batch size", "--batch-size 0", "batch_size must be a positive integer, got 0", cli=("--batch-size", "0")
    ),
    Case(
        "zero unlearning epochs",
        "--set blindspot.epochs=0",
        "blindspot settings: epochs must be a positive integer, got 0",
        cli=("--set", "blindspot.epochs=0"),
    ),
    Case(
        "zero unlearning epochs (old alias)",
        "--blindspot-epochs 0",
        "blindspot settings: epochs must be a positive integer",
        cli=("--blindspot-epochs", "0"),
    ),
    Case(
        "unknown unlearner setting",
        "--set blindspot.epoch=2",
        "blindspot has no setting(s) ['epoch']; its settings: ['proxy_epochs', 'epochs']",
        cli=("--set", "blindspot.epoch=2"),
    ),
    Case(
        "setting of the wrong type",
        "--set finetune.epochs=2.5",
        "finetune.epochs must be int, got 2.5",
        cli=("--set", "finetune.epochs=2.5"),
    ),
    Case("malformed setting", "--set epochs=2", "--set epochs: give NAME.FIELD=VALUE", cli=("--set", "epochs=2")),
    Case(
        "plugin that cannot be imported",
        "--plugin no_such_module_xyz",
        "plugin no_such_module_xyz: cannot be imported",
        cli=("--plugin", "no_such_module_xyz"),
    ),
    Case(
        "plugin file that is missing",
        "--plugin missing.py",
        "missing.py: no such file",
        cli=("--plugin", "{dir}/missing.py"),
    ),
    Case(
        "plugin whose import fails",
        "--plugin FILE that imports a missing package",
        "importing it failed: ModuleNotFoundError",
        cli=("--plugin", "{dir}/p.py"),
        files=_write("p.py", "import no_such_package_xyz\n"),
    ),
    Case(
        "plugin factory with the wrong signature",
        "--plugin FILE: make(model, task)",
        "make must take (model, task, cfg, plan, settings)",
        cli=("--plugin", "{dir}/p.py"),
        files=_write("p.py", _PLUGIN.format(make="def make(model, task): pass", name="mine", hp="{'lr': 1e-3}")),
    ),
    Case(
        "plugin name taken by a built-in",
        "--plugin FILE registering 'scrub'",
        "unlearner name 'scrub' is already registered",
        cli=("--plugin", "{dir}/p.py"),
        files=_write("p.py", _PLUGIN.format(make=_MAKE, name="scrub", hp="{'lr': 1e-3}")),
    ),
    Case(
        "plugin hyperparameter without a default",
        "--plugin FILE: hp={'lr': None}",
        "hyperparameter 'lr' needs a finite float default, got None",
        cli=("--plugin", "{dir}/p.py"),
        files=_write("p.py", _PLUGIN.format(make=_MAKE, name="mine", hp="{'lr': None}")),
    ),
    Case("negative augmentation", "--augment-pad -2", "augment_pad must be >= 0, got -2", cli=("--augment-pad", "-2")),
    Case(
        "batch larger than a split",
        "--batch-size 100000",
        "batch_size 100000 is larger than the",
        cli=("--batch-size", "100000"),
    ),
    Case(
        "unknown seed strategy", "--seed-strategy fast", "seed_strategy must be one of", cli=("--seed-strategy", "fast")
    ),
    Case("zero devices", "--devices 0", "devices must be a positive integer or None", cli=("--devices", "0")),
    Case("more devices than exist", "--devices 64", "devices: 64 asked for, but the", cli=("--devices", "64")),
    Case(
        "no processes",
        "--num-processes 0",
        "--num-processes must be a positive integer, got 0",
        cli=("--num-processes", "0"),
    ),
    Case(
        "process index out of range",
        "--num-processes 2 --process-id 2",
        "--process-id must lie in [0, 1], got 2",
        cli=("--num-processes", "2", "--process-id", "2"),
    ),
    Case(
        "unsupported dtype",
        "--dtype float16",
        "dtype must be 'float32' or 'bfloat16', got 'float16'",
        cli=("--dtype", "float16"),
    ),
    Case(
        "unknown hyperparameter",
        "--hp blindspot.gamma=1",
        "blindspot has no hyperparameter 'gamma'; it has",
        cli=("--hp", "blindspot.gamma=1"),
    ),
    Case(
        "malformed hyperparameter key",
        "--hp beta=1",
        "hyperparameter key 'beta' must look like STAGE.NAME",
        cli=("--hp", "beta=1"),
    ),
    Case(
        "non-numeric hyperparameter",
        "--hp finetune.lr=fast",
        "hp finetune.lr: values must be numbers, got 'fast'",
        cli=("--hp", "finetune.lr=fast"),
    ),
    Case(
        "non-positive learning rate",
        "--hp finetune.lr=0",
        "hp finetune.lr: a learning rate must be > 0, got 0",
        cli=("--hp", "finetune.lr=0"),
    ),
    Case(
        "hyperparameter of a stage not run",
        "--unlearners finetune --hp blindspot.beta=1",
        "blindspot is not among the unlearners this study runs",
        cli=("--unlearners", "finetune", "--hp", "blindspot.beta=1"),
    ),
    Case(
        "sweep of the reference model",
        "--sweep retrain.lr=0.01,0.1",
        "the retrain model cannot be swept",
        cli=("--sweep", "retrain.lr=0.01,0.1"),
    ),
    Case(
        "repeated sweep value",
        "--sweep blindspot.beta=10,10",
        "sweep blindspot.beta: values must differ",
        cli=("--sweep", "blindspot.beta=10,10"),
    ),
    Case(
        "fixed and swept at once",
        "--hp blindspot.beta=1 --sweep blindspot.beta=1,2",
        "blindspot.beta is given both a fixed value (hp) and swept values (sweep)",
        cli=("--hp", "blindspot.beta=1", "--sweep", "blindspot.beta=1,2"),
    ),
    Case(
        "weight outside its range",
        "--unlearners neggrad --hp neggrad.retain_weight=1.5",
        "hp neggrad.retain_weight: must lie in [0, 1], got 1.5",
        cli=("--unlearners", "neggrad", "--hp", "neggrad.retain_weight=1.5"),
    ),
    Case(
        "negative attention weight",
        "--sweep blindspot.beta=-1,10",
        "sweep blindspot.beta: must lie in [0, inf]",
        cli=("--sweep", "blindspot.beta=-1,10"),
    ),
    Case(
        "negative dampening",
        "--unlearners ssd --hp ssd.dampening=-1",
        "hp ssd.dampening: must lie in [0, inf], got -1",
        cli=("--unlearners", "ssd", "--hp", "ssd.dampening=-1"),
    ),
    Case(
        "more SCRUB max epochs than epochs",
        "--set scrub.epochs=2 --set scrub.max_epochs=3",
        "scrub settings: max_epochs (3) must be <= epochs (2)",
        cli=("--unlearners", "scrub", "--set", "scrub.epochs=2", "--set", "scrub.max_epochs=3"),
    ),
    Case(
        "SISA shards above the training rows",
        "--unlearners sisa --set sisa.shards=100000",
        "sisa: 100000 shards but only",
        cli=("--unlearners", "sisa", "--set", "sisa.shards=100000"),
    ),
    Case(
        "SISA slices above a shard's rows",
        "--unlearners sisa --set sisa.shards=2 --set sisa.slices=1000",
        "sisa: 1000 slices but a shard holds",
        cli=("--unlearners", "sisa", "--set", "sisa.shards=2", "--set", "sisa.slices=1000"),
    ),
    Case(
        "unknown SISA aggregate",
        "--unlearners sisa --set sisa.aggregate=mode",
        "aggregate must be one of ('mean', 'median'), got 'mode'",
        cli=("--unlearners", "sisa", "--set", "sisa.aggregate=mode"),
    ),
    Case(
        "zero SISA shards",
        "--unlearners sisa --set sisa.shards=0",
        "shards must be a positive integer, got 0",
        cli=("--unlearners", "sisa", "--set", "sisa.shards=0"),
    ),
    Case(
        "SCRUB forget batch above the forget rows",
        "--unlearners scrub --scrub-forget-batch 100000",
        "scrub.forget_batch (100000) must be <= the",
        cli=("--unlearners", "scrub", "--scrub-forget-batch", "100000"),
    ),
    Case(
        "unknown model argument",
        "--model-arg depth=3",
        "got unknown argument(s) ['depth']",
        cli=("--model-arg", "depth=3"),
    ),
    Case(
        "dtype as model argument",
        "--model-arg dtype=float32",
        "with StudyConfig.dtype (--dtype)",
        cli=("--model-arg", "dtype=float32"),
    ),
    Case(
        "malformed model argument",
        "--model-arg hidden",
        "--model-arg must look like name=value",
        cli=("--model-arg", "hidden"),
    ),
    Case(
        "model / input shape mismatch",
        "--model lstm on 8 tabular features",
        "cannot take inputs of shape [8]",
        cli=("--model", "lstm", "--model-arg", "hidden=8"),
    ),
    Case(
        "own model field without a stable name",
        "run_study(model=OwnNet(scale=Opaque()))",
        "its repr holds a memory address",
        call=lambda _: _own_model(Opaque()),
    ),
    Case(
        "own model field with an abbreviated repr",
        "run_study(model=OwnNet(scale=Tensor(...)))",
        "its repr is abbreviated ('...')",
        call=lambda _: _own_model(Tensor()),
    ),
    Case(
        "unknown forget rule",
        "--forget age<30",
        "unknown forget rule 'age<30'; accepted forms:",
        cli=("--forget", "age<30"),
    ),
    Case(
        "label range outside the data",
        "--forget label>1e9",
        "the forget set is empty (training labels lie in",
        cli=("--forget", "label>1e9"),
    ),
    Case(
        "forget set = whole training set",
        "--forget label>-1e9",
        "nothing would be retained",
        cli=("--forget", "label>-1e9"),
    ),
    Case(
        "inverted label range",
        "--forget label:20:10",
        "LabelRange low=20.0 is above high=10.0",
        cli=("--forget", "label:20:10"),
    ),
    Case(
        "quantile outside (0, 1)",
        "--forget quantile>=1.5",
        "q must lie strictly between 0 and 1, got 1.5",
        cli=("--forget", "quantile>=1.5"),
    ),
    Case(
        "random fraction outside (0, 1)",
        "--forget random:1.5",
        "fraction must lie strictly between 0 and 1",
        cli=("--forget", "random:1.5"),
    ),
    Case(
        "unknown dataset argument",
        "--dataset taylor --dataset-arg windw=4",
        "dataset 'taylor' takes no argument(s) ['windw']; it accepts",
        cli=("--dataset", "taylor", "--dataset-arg", "windw=4"),
    ),
    Case(
        "bad dataset argument value",
        "--dataset taylor --dataset-arg window=0",
        "window and horizon must be positive",
        cli=("--dataset", "taylor", "--dataset-arg", "window=0"),
    ),
    Case("missing config file", "--config missing.toml", "--config: no such file", cli=("--config", "{dir}/nope.toml")),
    Case(
        "corrupt config file",
        "--config FILE holding: seeds = = 3",
        "is not a readable TOML file",
        cli=("--config", "{dir}/bad.toml"),
        files=_write("bad.toml", "seeds = = 3\n"),
    ),
    Case(
        "unknown config setting",
        "--config FILE holding: epochs = 3",
        "unknown setting(s) ['epochs']; known settings:",
        cli=("--config", "{dir}/c.toml"),
        files=_write("c.toml", "epochs = 3\n"),
    ),
    Case(
        "wrong type in config",
        '--config FILE holding: mia_samples = "8"',
        "mia_samples must be a positive integer, got '8'",
        cli=("--config", "{dir}/c.toml"),
        files=_write("c.toml", 'mia_samples = "8"\n'),
    ),
    Case(
        "invalid Gaussian statistics",
        '--config FILE holding: [gaussian] stats = "forget"',
        "gaussian settings: stats must be 'all' or 'retain', got 'forget'",
        cli=("--config", "{dir}/c.toml"),
        files=_write("c.toml", '[gaussian]\nstats = "forget"\n'),
    ),
    Case(
        "negative relearning threshold",
        "--config FILE holding: relearn_alpha = -1.0",
        "relearn_alpha must be >= 0",
        cli=("--config", "{dir}/c.toml"),
        files=_write("c.toml", "relearn_alpha = -1.0\n"),
    ),
    Case(
        "resume without checkpoints",
        "--resume --no-checkpoints",
        "--resume needs checkpoints",
        cli=("--resume", "--no-checkpoints"),
    ),
    Case(
        "checkpoint from another configuration",
        "--resume into a folder of a 3-seed study",
        "are from another configuration; it differs in seeds: 3 there, 2 now",
        cli=("--resume", "--checkpoint-dir", "{dir}/ckpt"),
        files=_other_study,
    ),
    Case(
        "NaN in inputs", "x with a NaN", "train.x has 1 NaN/inf value(s) (first at row 1)", call=_with_nan("train", "x")
    ),
    Case(
        "inf in targets",
        "y with an inf",
        "test.y has 1 NaN/inf value(s) (first at row 7)",
        call=_with_nan("test", "y", np.inf),
    ),
    Case(
        "rows of x and y differ",
        "x with one row fewer than y",
        "train.x must have shape [N, ...] with N = len(y)",
        call=lambda _: build_task(_raw({("train", "x"): np.zeros((N - 1, 4))})),
    ),
    Case(
        "non-numeric inputs",
        "x of strings",
        "x and y must be numeric",
        call=lambda _: build_task(_raw({("train", "x"): np.full((N, 4), "a")})),
    ),
    Case(
        "2-D targets",
        "y of shape [N, 2]",
        "train.y must have shape [N] or [N, 1], got",
        call=lambda _: build_task(_raw({("train", "y"): np.zeros((N, 2))})),
    ),
    Case(
        "feature shapes differ between splits",
        "val.x with 5 features",
        "val.x has feature shape (5,), train has (4,)",
        call=lambda _: build_task(
            _raw({("val", "x"): np.zeros((make_synthetic(n=300, dim=4).splits["val"][1].shape[0], 5))})
        ),
    ),
    Case("missing split", "no validation split", "data is missing split(s) ['val']", call=_drop_split),
    Case(
        "out-of-range forget indices",
        "Indices with row 10**6",
        f"must lie in [0, {N}); got min",
        call=_rule(Indices({"train": np.array([1, 10**6])})),
    ),
    Case(
        "overlapping forget indices",
        "Indices with row 3 twice",
        "Indices for split 'train' contain duplicates",
        call=_rule(Indices({"train": np.array([3, 3, 5])})),
    ),
    Case(
        "forget mask of the wrong shape",
        "Mask of 5 rows",
        f"must be a bool array of shape ({N},)",
        call=_rule(Mask({"train": np.ones(5, bool), "val": np.ones(30, bool), "test": np.ones(60, bool)})),
    ),
    Case(
        "missing data folder",
        "--dataset agedb --dataset-arg data_dir=<missing>",
        "agedb",
        cli=("--dataset", "agedb", "--dataset-arg", "data_dir={dir}/no_such_folder"),
    ),
    Case(
        "corrupt data file",
        "--dataset electricity with a non-numeric load",
        "electricity",
        cli=("--dataset", "electricity", "--dataset-arg", "path={dir}/LD2011_2014.txt"),
        files=_write("LD2011_2014.txt", '"";"MT_001"\n"2011-01-01 00:15:00";abc\n'),
    ),
    Case(
        "a file as the dataset name",
        "--dataset my.csv",
        "--dataset table --dataset-arg path=my.csv --dataset-arg target=COLUMN",
        cli=("--dataset", "my.csv"),
    ),
    Case(
        "missing table file",
        "--dataset table --dataset-arg path=<missing>.csv",
        "nope.csv does not exist; usage: --dataset table --dataset-arg path=FILE.csv",
        cli=("--dataset", "table", "--dataset-arg", "path={dir}/nope.csv", "--dataset-arg", "target=y"),
    ),
    Case(
        "unknown table column",
        "--dataset table --dataset-arg target=price (no such column)",
        "has no column 'price' (target); its columns: ['a', 'b', 'y']",
        cli=("--dataset", "table", "--dataset-arg", "path={dir}/t.csv", "--dataset-arg", "target=price"),
        files=_write("t.csv", "a,b,y\n1,2,3\n4,5,6\n"),
    ),
    Case(
        "table cell that is not a number",
        "--dataset table with the cell 'n.a' in feature b",
        "line 3: feature column 'b': value 'n.a' is not a number",
        cli=("--dataset", "table", "--dataset-arg", "path={dir}/t.csv", "--dataset-arg", "target=y"),
        files=_write("t.csv", "a,b,y\n1,2,3\n4,n.a,6\n7,8,9\n"),
    ),
    Case(
        "table split column with other values",
        "--dataset table --dataset-arg split=fold, a row holding 'holdout'",
        "split column 'fold' holds 'holdout'; its values must be train, val, test",
        cli=(
            "--dataset",
            "table",
            "--dataset-arg",
            "path={dir}/t.csv",
            "--dataset-arg",
            "target=y",
            "--dataset-arg",
            "split=fold",
        ),
        files=_write("t.csv", "a,fold,y\n1,train,3\n4,val,6\n7,holdout,9\n"),
    ),
    Case(
        "shadows not a multiple of the groups",
        "evaluate --protocol ulira --shadows 10 --groups 4",
        "models (10) must be a multiple of groups (4)",
        call=lambda _: _evaluate("ulira", models=10, groups=4),
    ),
    Case(
        "too few shadows per group",
        "evaluate --protocol ulira --shadows 4 --groups 4",
        "a variance needs at least 2",
        call=lambda _: _evaluate("ulira", models=4, groups=4),
    ),
    Case(
        "odd number of shadow groups",
        "evaluate --protocol ulira --groups 5",
        "groups must be even and >= 4",
        call=lambda _: _evaluate("ulira", models=20, groups=5),
    ),
    Case(
        "an unknown grid unit (Python; the command offers the known ones)",
        "EvaluationConfig(grid_unit='logit')",
        "unknown grid unit 'logit'; choose from ('reference-std', 'target')",
        call=lambda _: _evaluate("neurips23", grid_unit="logit"),
    ),
    Case(
        "a sweep in an evaluation",
        "evaluate --sweep blindspot.beta=0,10",
        "an evaluation takes one value per hyperparameter",
        call=lambda _: _evaluate("neurips23", sweep={"blindspot.beta": (0.0, 10.0)}),
    ),
    Case(
        "a setting the protocol does not read",
        "evaluate --protocol neurips23 --groups 8",
        "--groups does not apply to --protocol neurips23; drop it",
        call=lambda _: _command("evaluate", "--protocol", "neurips23", "--groups", "8"),
    ),
    Case(
        "redrawing figures from a folder that holds no study",
        "plots OUT (no results.json in OUT)",
        "not a study's output folder",
        call=lambda folder: _command("plots", str(folder)),
    ),
    Case(
        "unreadable memory limit",
        "evaluate --memory-limit lots",
        "a memory size looks like 512MB",
        call=lambda _: _evaluate("neurips23", memory_limit="lots"),
    ),
]


def _run(case: Case, folder: Path, capsys) -> str:
    if case.files:
        case.files(folder)
    if case.cli:
        args = [a.replace("{dir}", str(folder)) for a in case.cli]
        code = main([*TINY, "--out", str(folder / "out"), *args])
        err = capsys.readouterr().err
        assert code == 2, err
        assert not (folder / "out" / "results.json").exists()
        return err.strip().removeprefix("jaxunlearn: error: ")
    with pytest.raises(ValueError) as info:
        case.call(folder)
    return str(info.value)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_rejected_before_compute_with_a_clear_message(case, tmp_path, capsys):
    before = _compiles[0]
    message = _run(case, tmp_path, capsys)
    assert case.expect in message, message
    assert _compiles[0] == before, f"{case.name}: compiled {_compiles[0] - before} XLA program(s) before rejecting"


def test_at_least_25_distinct_cases():
    assert len({c.name for c in CASES}) == len(CASES) >= 25


def test_docs_table_is_current(tmp_path_factory, capsys):
    rows = ["| # | bad input | what you give | message |", "|---|---|---|---|"]
    for i, case in enumerate(CASES, 1):
        message = _run(case, tmp_path_factory.mktemp("case"), capsys)
        message = re.sub(re.escape(str(tmp_path_factory.getbasetemp())) + r"/case\d*", "<tmp>", message)
        message = re.sub(r"\bat 0x[0-9a-fA-F]+", "at 0x...", message)  # a memory address, in a repr
        message = message.replace("|", "\\|")
        message = " ".join(message.split())
        rows.append(f"| {i} | {case.name} | `{case.given}` | {message} |")
    table = "\n".join(rows) + "\n"
    head = (
        "# Bad input and what jaxunlearn says\n\n"
        "Every row is a test case in `tests/test_bad_input.py`: the input is rejected before any XLA program "
        "compiles, the CLI exits with status 2, and the message below is the one actually raised (paths "
        "shortened to `<tmp>`). Regenerate with `JAXUNLEARN_WRITE_DOCS=1 python -m pytest "
        "tests/test_bad_input.py`.\n\n"
    )
    text = head + table
    if os.environ.get("JAXUNLEARN_WRITE_DOCS") == "1":
        DOC.parent.mkdir(exist_ok=True)
        DOC.write_text(text)
    assert DOC.exists(), "docs/BAD_INPUT.md is missing: run with JAXUNLEARN_WRITE_DOCS=1"
    assert DOC.read_text() == text, "docs/BAD_INPUT.md is out of date: run with JAXUNLEARN_WRITE_DOCS=1"
