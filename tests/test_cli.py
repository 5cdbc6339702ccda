"""The command line: a real (tiny) study end to end, and clear errors for bad input."""

import contextlib
import io
import json

import pytest

from jaxunlearn.cli import main, parse_model_args
from tests.helpers import TINY_RUN_ARGS

# The module-scoped study is run once: these tests share one worker (make test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("cli")

TINY_ARGS = [*TINY_RUN_ARGS, "--batch-size", "64", "--finetune-epochs", "1", "--proxy-epochs", "1", "--no-progress"]


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """``jaxunlearn run TINY_ARGS`` once: (its output folder, what it printed)."""
    out, printed = tmp_path_factory.mktemp("tiny_study"), io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main([*TINY_ARGS, "--out", str(out)]) == 0
    return out, printed.getvalue()


def test_run_writes_table_and_files(tiny_study):
    tmp_path, out = tiny_study
    for row in ("original", "retrain", "finetune", "gaussian", "blindspot"):
        assert f"| {row} |" in out
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["summary"]) == {"original", "retrain", "finetune", "gaussian", "blindspot"}
    assert len(results["per_seed"]["blindspot"]["test_forget_mae"]) == 2
    md = (tmp_path / "results.md").read_text()
    assert "| blindspot |" in md
    assert "note: seed strategy" not in out  # the measured default plan
    # The paper's claims, paired over the seeds, printed and saved (with Holm's correction).
    for text in (out, md):
        assert "The paper's claims about blindspot" in text and "after Holm (9 comparisons)" in text
        assert "| anamnesis index nearest 1 | gaussian |" in text


def test_python_writes_what_the_command_line_writes(tiny_study, tmp_path):
    import dataclasses

    from jaxunlearn.config import StudyConfig
    from jaxunlearn.study import run_study

    cli_out, _ = tiny_study
    theirs = json.loads((cli_out / "results.json").read_text())
    fields = {f.name for f in dataclasses.fields(StudyConfig)}
    cfg = StudyConfig(**{k: v for k, v in theirs["config"].items() if k in fields})
    result = run_study(cfg, progress=False, log=lambda _: None)
    paths = result.write(tmp_path, figures=False)
    assert [p.name for p in paths] == ["results.json", "results.md", "results.csv", "curves.csv", "predictions.npz"]
    ours = json.loads(paths[0].read_text())
    assert set(ours) == set(theirs) and set(ours["environment"]) == set(theirs["environment"])
    untimed = ("timings",)
    assert {k: v for k, v in ours["config"].items() if k not in untimed} == {
        k: v for k, v in theirs["config"].items() if k not in untimed
    }
    timing = ("run_seconds", "time_vs_retrain")
    for row, metrics in theirs["per_seed"].items():  # the same models on this machine: bitwise
        assert {k: v for k, v in ours["per_seed"][row].items() if k not in timing} == {
            k: v for k, v in metrics.items() if k not in timing
        }
    assert ours["prediction_digests"] == theirs["prediction_digests"]
    for name in ("curves.csv", "predictions.npz"):  # the same models: the same losses and predictions
        assert (tmp_path / name).read_bytes() == (cli_out / name).read_bytes(), name
    claims = "The paper's claims about blindspot"
    md_ours, md_theirs = paths[1].read_text(), (cli_out / "results.md").read_text()
    assert md_ours[md_ours.index(claims) :] == md_theirs[md_theirs.index(claims) :]


def test_tidy_export_round_trips_into_the_summary(tiny_study):
    import math

    import pandas as pd

    from jaxunlearn.metrics.suite import METRICS, PER_STAGE
    from jaxunlearn.tidy import TIDY_COLUMNS, load_result

    out, _ = tiny_study
    saved = json.loads((out / "results.json").read_text())
    frame = pd.read_csv(out / "results.csv")
    assert list(frame.columns[:7]) == list(TIDY_COLUMNS[:7]) and "hp.lr" in frame.columns
    assert "setting.epochs" in frame.columns and list(frame.columns[-3:]) == ["seed", "metric", "value"]
    grouped = frame.groupby(["row", "metric"]).value
    means, counts = grouped.mean(), grouped.count()
    for row, metrics in saved["summary"].items():
        for metric, entry in metrics.items():
            per_stage = METRICS[metric].per == PER_STAGE
            assert counts[(row, metric)] == (1 if per_stage else entry["n"]), (row, metric)
            assert math.isclose(means[(row, metric)], entry["mean"], rel_tol=1e-12), (row, metric)
    timings = frame[frame.metric == "run_seconds"]
    assert timings.seed.isna().all() and len(timings) == len(saved["summary"])  # once per row, not per seed
    finetune = frame[frame.row == "finetune"]
    assert (finetune.stage == "finetune").all() and finetune["setting.epochs"].notna().all()
    # Python's frame is the same table
    result = load_result(out)
    ours = result.to_dataframe()
    assert ours.shape == frame.shape and list(ours.columns) == list(frame.columns)
    assert str(ours.seed.dtype) == "Int64"


def test_learning_curves_are_kept_for_every_row_and_seed(tiny_study):
    import numpy as np
    import pandas as pd

    from jaxunlearn.tidy import load_result

    out, _ = tiny_study
    saved = json.loads((out / "results.json").read_text())
    curves = pd.read_csv(out / "curves.csv")
    assert set(curves.row) == set(saved["summary"])
    for row, lines in curves.groupby("row"):
        assert set(lines.seed) == {0, 1}, row
        assert lines.train_loss.notna().all(), row
    original = curves[curves.row == "original"]
    assert sorted(set(original.epoch)) == [1, 2] and original.val_loss.notna().all()  # --epochs 2, validated
    result = load_result(out)
    assert np.asarray(result.curves["original"]["train_loss"]).shape == (2, 2)


def test_plots_command_redraws_every_figure_from_the_folder(tiny_study, tmp_path, capsys):
    from jaxunlearn.plots import FIGURE_FILES

    out, _ = tiny_study
    assert main(["plots", str(out), "--to", str(tmp_path), "--dpi", "40"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FIGURE_FILES)
    for name in FIGURE_FILES:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    (tmp_path / "empty").mkdir()
    assert main(["plots", str(tmp_path / "empty")]) == 2
    assert "not a study's output folder" in capsys.readouterr().err


def test_a_folder_without_predictions_reports_no_closest_row(tiny_study, tmp_path):
    import shutil

    from jaxunlearn.tidy import PREDICTIONS_NPZ, load_result

    out, _ = tiny_study
    assert "Closest to retraining" in load_result(out).report()
    for name in ("results.json", "results.md"):  # an older folder: no predictions, no targets' scale
        shutil.copy(out / name, tmp_path / name)
    assert not (tmp_path / PREDICTIONS_NPZ).exists()
    report = load_result(tmp_path).report()
    assert "| blindspot |" in report and "Closest to retraining" not in report


def _event_scalars(folder):
    """{tag: [(step, value)]} of the TensorBoard event files in ``folder`` (TFRecord framing:
    length u64, its crc u32, the Event proto, its crc u32)."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    scalars = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        at = 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at : at + 8])
            event = Event.FromString(data[at + 12 : at + 12 + length])
            at += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_tensorboard_export_holds_curves_and_metrics(tiny_study, tmp_path):
    import numpy as np

    from jaxunlearn.tensorboard_export import run_folder, write_tensorboard
    from jaxunlearn.tidy import load_result

    result = load_result(tiny_study[0])
    write_tensorboard(result, tmp_path)
    scalars = _event_scalars(run_folder(tmp_path, "original", 1))
    losses = np.asarray(result.curves["original"]["train_loss"])[1]
    assert [s for s, _ in scalars["loss/train"]] == [1, 2]
    np.testing.assert_allclose([v for _, v in scalars["loss/train"]], losses, rtol=1e-6)
    assert "loss/val" in scalars
    forget = float(result.per_seed["original"]["test_forget_mae"][1])
    assert scalars["metrics/test_forget_mae"] == [(2, pytest.approx(forget, rel=1e-6))]
    assert sorted(p.name for p in (tmp_path / "tensorboard").iterdir()) == sorted(result.rows)


# Bad input: tests/test_bad_input.py (and docs/BAD_INPUT.md).


def test_bfloat16_study_runs_and_stays_finite(tmp_path, capsys):
    # Also an overridden seed strategy (vmap; the CPU's measured choice for an MLP is map).
    # One unlearner (Blindspot: attention maps in bf16) keeps the number of programs down.
    assert (
        main(
            [
                *TINY_ARGS,
                "--dtype",
                "bfloat16",
                "--seed-strategy",
                "vmap",
                "--unlearners",
                "blindspot",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    assert "note: seed strategy 'vmap' chosen over 'map', the measured fastest" in capsys.readouterr().out
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["config"]["dtype"] == "bfloat16"
    for row in ("original", "blindspot"):
        assert all(v is not None for v in results["per_seed"][row]["test_forget_mae"])


def test_help_and_list(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert main(["list"]) == 0
    assert "blindspot" in capsys.readouterr().out


def test_parse_model_args():
    assert parse_model_args(["hidden=64,32", "width=8"]) == (("hidden", (64, 32)), ("width", 8))
    assert parse_model_args(["hoist_input=False", "x=true"]) == (("hoist_input", False), ("x", True))
    with pytest.raises(ValueError, match="name=value"):
        parse_model_args(["hidden"])


def test_same_configuration_gives_identical_metrics(tiny_study, tmp_path):
    first, second = tiny_study[0], tmp_path
    assert main([*TINY_ARGS, "--out", str(second)]) == 0
    per_seed = [json.loads((d / "results.json").read_text())["per_seed"] for d in (first, second)]
    for row, metrics in per_seed[0].items():
        for name, values in metrics.items():
            if name not in ("run_seconds", "time_vs_retrain"):  # wall times differ, nothing else may
                assert values == per_seed[1][row][name], (row, name)


def test_interrupt_says_how_to_resume(tmp_path, capsys, monkeypatch):
    import jaxunlearn.study

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(jaxunlearn.study, "run_study", interrupted)
    assert main([*TINY_ARGS, "--out", str(tmp_path)]) == 130
    assert "rerun the same command with --resume" in capsys.readouterr().err
