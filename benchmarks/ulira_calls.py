"""What U-LiRA's shadow models cost in compiles and calls (issue 28, item 2): one U-LiRA
evaluation of the default study's unlearners, with the persistent compile cache off.

Before per-model training rows, every group of shadows was its own block (one call per
group and stage, its group task a copy of the training rows); with ``Split.rows`` each
stage trains all its shadows in one block, in calls chunked only by memory. Run it in a
checkout of either version to compare.

Prints one JSON line: programs built (JAX's backend-compile events), blocks and compiled
calls of the stages, compile and run seconds of the blocks, wall seconds of the whole
evaluation (metrics included), the device and versions. Usage::

    python -m benchmarks.ulira_calls [--shadows 256] [--groups 16] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import time


def measure(shadows: int, groups: int, epochs: int, dataset: str | None = None) -> dict:
    """Runs the evaluation and returns the record described in the module docstring."""
    import jax

    from jaxunlearn.config import StudyConfig
    from jaxunlearn.evaluation import EvaluationConfig, run_evaluation
    from jaxunlearn.machine import package_versions

    counts = {"programs": 0}

    def on_duration(event: str, duration: float, **kw) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            counts["programs"] += 1

    jax.monitoring.register_event_duration_secs_listener(on_duration)
    short = {"finetune": {"epochs": 2}, "blindspot": {"proxy_epochs": 2, "epochs": 2}, "gaussian": {"epochs": 1}}
    cfg = StudyConfig(train_epochs=epochs, settings=short, **({"dataset": dataset} if dataset else {}))
    start = time.perf_counter()
    result, _ = run_evaluation(
        cfg,
        EvaluationConfig("ulira", models=shadows, groups=groups),
        progress=False,
        log=lambda _: None,
        compile_cache=False,
    )
    wall = time.perf_counter() - start
    blocks = result.timings.values()
    return {
        "shadows": shadows,
        "groups": groups,
        "epochs": epochs,
        "dataset": cfg.dataset,
        "rows": result.rows,
        "programs": counts["programs"],
        "blocks": len(blocks),
        "calls": sum(-(-int(b["models"]) // int(b.get("chunk", b["models"]))) for b in blocks),
        "compile_s": round(sum(b["compile"] for b in blocks), 2),
        "run_s": round(sum(b["run"] for b in blocks), 2),
        "wall_s": round(wall, 2),
        "auc": {row: round(result.metrics[row]["auc"], 4) for row in result.rows},
        "device": jax.devices()[0].device_kind,
        "versions": {k: package_versions().get(k) for k in ("jax", "jaxlib", "flax")},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shadows", type=int, default=256)
    parser.add_argument("--groups", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--dataset", default=None, help="default: the default study's dataset")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.shadows, args.groups, args.epochs, args.dataset)), flush=True)


if __name__ == "__main__":
    main()
