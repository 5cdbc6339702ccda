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
    assert [p.name for p in paths] == ["results.json", "results.md"]
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
    claims = "The paper's claims about blindspot"
    md_ours, md_theirs = paths[1].read_text(), (cli_out / "results.md").read_text()
    assert md_ours[md_ours.index(claims) :] == md_theirs[md_theirs.index(claims) :]


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
