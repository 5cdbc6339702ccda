"""PyTorch eager reference: the AllCNN training epoch and blindspot epoch written the way
the paper's public code runs them, timed on the same device as the JAX suite so every
speedup is a ratio from one run on one card.

Reference style, on purpose: a Python loop over shuffled batches, ``loss.item()`` every
step, boolean-mask indexing of forget / retain rows (``x[mask]``), the proxy run on the
forget rows only under ``torch.no_grad()`` in eval mode, the attention-transfer loss of
ALGORITHMS.md over the 8 block outputs, ReduceLROnPlateau on a validation pass after each
training epoch. Same architecture as ``jaxunlearn.models.AllCNN`` (8 Conv-BN-ReLU blocks,
widths w,w,w,2w,2w,2w,2w,2w, 3x3 kernels except a 1x1 last block, stride 2 in blocks 3 and
6, global average pool, Linear(2w, 1)); PyTorch pads stride-2 convs symmetrically where
XLA's SAME pads (0, 1): same shapes and FLOPs. Data: synthetic, already on the device.

    python benchmarks/torch_reference.py --out bench.jsonl                   # full size (GPU)
    python benchmarks/torch_reference.py --workload allcnn-quick --out q.jsonl   # CPU check
    python benchmarks/torch_reference.py --max-batches 2 --device cpu ...    # a few batches

Without torch it appends one "skipped" record saying so and exits 0. torch is an optional
benchmark extra (``pip install .[bench]``), never a dependency of jaxunlearn.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import (
    FORGET_QUANTILE,
    WORKLOADS,
    append_record,
    run_info,
    summary_stats,
)

BLOCKS = ((1, 3, 1), (1, 3, 1), (1, 3, 2), (2, 3, 1), (2, 3, 1), (2, 3, 2), (2, 3, 1), (2, 1, 1))
PAPER_EPOCHS = {"train": 100, "blindspot": 1}


def build_model(torch, width: int, in_channels: int = 3):
    nn = torch.nn

    class AllCNN(nn.Module):
        def __init__(self):
            super().__init__()
            layers, c_in = [], in_channels
            for mult, k, s in BLOCKS:
                c = width * mult
                layers.append(
                    nn.Sequential(
                        nn.Conv2d(c_in, c, k, stride=s, padding=k // 2, bias=False),
                        nn.BatchNorm2d(c, eps=1e-5, momentum=0.1),
                        nn.ReLU(),
                    )
                )
                c_in = c
            self.blocks = nn.ModuleList(layers)
            self.head = nn.Linear(c_in, 1)

        def forward(self, x):
            feats = []
            for block in self.blocks:
                x = block(x)
                feats.append(x)
            return self.head(x.mean(dim=(2, 3))).float(), feats

    return AllCNN()


def attention(torch, a):
    """Zagoruyko & Komodakis: L2-normalised mean over channels of a^2, flattened per row."""
    return torch.nn.functional.normalize(a.float().pow(2).mean(1).flatten(1), dim=1)


def make_data(torch, wl, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    h, w, c = wl.feature_shape
    n = wl.rows + 2 * wl.extra_rows
    x = torch.randn(n, c, h, w, generator=g)
    v = torch.randn(c * h * w, generator=g)
    y = x.flatten(1) @ v / math.sqrt(v.numel())
    threshold = torch.quantile(y[: wl.rows], FORGET_QUANTILE)
    forget = y <= threshold
    y = ((y - y[: wl.rows].mean()) / y[: wl.rows].std()).unsqueeze(1)
    split = {
        "train": slice(0, wl.rows),
        "val": slice(wl.rows, wl.rows + wl.extra_rows),
        "test": slice(wl.rows + wl.extra_rows, n),
    }
    return {k: (x[s].to(device), y[s].to(device), forget[s].to(device)) for k, s in split.items()}


class Reference:
    def __init__(self, torch, wl, device, dtype, max_batches=None):
        self.torch, self.wl, self.device, self.max_batches = torch, wl, device, max_batches
        self.data = make_data(torch, wl, device)
        self.amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bfloat16")
        width = dict(wl.model_kwargs).get("width", 96)
        torch.manual_seed(0)
        self.model = build_model(torch, width).to(device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=0.01)
        self.sched = torch.optim.lr_scheduler.ReduceLROnPlateau(self.opt, factor=0.1, patience=10)
        self.proxy = build_model(torch, width).to(device).eval()
        self.student = build_model(torch, width).to(device)
        self.student_opt = torch.optim.Adam(self.student.parameters(), lr=1e-3)

    def batches(self):
        n, b = self.wl.rows, self.wl.batch_size
        perm = self.torch.randperm(n, device=self.device)
        starts = list(range(0, n, b))[: self.max_batches]
        return [perm[i : i + b] for i in starts]

    def rows_per_epoch(self):
        return sum(int(idx.numel()) for idx in self.batches())

    def train_epoch(self) -> float:
        torch, F = self.torch, self.torch.nn.functional
        x, y, _ = self.data["train"]
        self.model.train()
        running, seen = 0.0, 0
        for idx in self.batches():
            xb, yb = x[idx], y[idx]
            self.opt.zero_grad()
            with self.amp:
                pred, _ = self.model(xb)
            loss = F.l1_loss(pred, yb)
            loss.backward()
            self.opt.step()
            running += loss.item() * len(idx)
            seen += len(idx)
        self.model.eval()
        xv, yv, _ = self.data["val"]
        val, nv = 0.0, 0
        with torch.no_grad(), self.amp:
            for i in range(0, xv.shape[0], self.wl.batch_size):
                pred, _ = self.model(xv[i : i + self.wl.batch_size])
                val += F.l1_loss(pred.float(), yv[i : i + self.wl.batch_size], reduction="sum").item()
                nv += pred.shape[0]
        self.sched.step(val / nv)
        return running / seen

    def blindspot_epoch(self, beta: float = 50.0) -> float:
        torch, F = self.torch, self.torch.nn.functional
        x, y, forget = self.data["train"]
        self.student.train()
        running, seen = 0.0, 0
        for idx in self.batches():
            xb, yb, fb = x[idx], y[idx], forget[idx]
            rb = ~fb
            self.student_opt.zero_grad()
            with self.amp:
                pred, feats = self.student(xb)
                label_loss = F.l1_loss(pred[rb], yb[rb]) if rb.any() else pred.sum() * 0.0
                proxy_loss = pred.sum() * 0.0
                if fb.any():
                    with torch.no_grad():
                        proxy_pred, proxy_feats = self.proxy(xb[fb])
                    proxy_loss = F.l1_loss(pred[fb], proxy_pred.float())
                    for s, t in zip(feats, proxy_feats, strict=True):
                        proxy_loss = proxy_loss + beta * (attention(torch, s[fb]) - attention(torch, t)).pow(2).mean()
                coeff = fb.sum() / len(fb)
                loss = coeff * proxy_loss + (1 - coeff) * label_loss
            loss.backward()
            self.student_opt.step()
            running += loss.item() * len(idx)
            seen += len(idx)
        return running / seen

    def test_mae(self, model) -> dict:
        x, y, forget = self.data["test"]
        model.eval()
        with self.torch.no_grad(), self.amp:
            pred, _ = model(x)
        err = (pred.float() - y).abs()[:, 0]
        return {
            "test_retain_mae": summary_stats([err[~forget].mean().item()]),
            "test_forget_mae": summary_stats([err[forget].mean().item()]),
        }


def measure(torch, ref: Reference, phase: str, repeats: int) -> dict:
    sync = torch.cuda.synchronize if ref.device.type == "cuda" else (lambda: None)
    epoch = ref.train_epoch if phase == "train" else ref.blindspot_epoch
    if ref.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync()
    t0 = time.perf_counter()
    loss = epoch()  # warm-up: cuDNN heuristics, lazy initialisation
    sync()
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        loss = epoch()
        sync()
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    rows = ref.rows_per_epoch()
    model = ref.model if phase == "train" else ref.student
    cuda = ref.device.type == "cuda"
    return {
        "kind": "measurement",
        "phase": phase,
        "pipeline": "original" if phase == "train" else "blindspot",
        "seeds": 1,
        "strategy": "torch-eager",
        "rows_per_epoch": rows,
        "partial_epoch": ref.max_batches is not None,
        "compile_s": max(first - median, 0.0),
        "first_call_s": first,
        "repeats": repeats,
        "epoch_s_median": median,
        "epoch_s_all": times,
        "per_seed_epoch_s": median,
        "samples_per_s": rows / median,
        "seed_epochs_per_s": 1.0 / median,
        "flops_per_seed_epoch": None,
        "achieved_tflops": None,
        "flops_source": "none (the summary compares epoch times with the JAX records of the same work)",
        "peak_bytes_in_use": torch.cuda.max_memory_allocated() if cuda else None,
        "memory_note": "torch.cuda.max_memory_allocated() over this measurement"
        if cuda
        else "no device memory counter on the CPU",
        "paper_epochs": PAPER_EPOCHS[phase],
        "phase_s_projected": PAPER_EPOCHS[phase] * median,
        "quality": {"train_loss": summary_stats([loss]), **ref.test_mae(model)},
        "torch_threads": torch.get_num_threads(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/bench.jsonl")
    parser.add_argument("--workload", default="allcnn", choices=[k for k in WORKLOADS if k.startswith("allcnn")])
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cuda or cpu")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--phases", default="train,blindspot")
    parser.add_argument("--repeats", type=int, default=2, help="timed epochs after the warm-up epoch")
    parser.add_argument("--max-batches", type=int, default=None, help="cut each epoch to this many batches")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads (CPU; 1 avoids OpenMP spinning on a shared 2-core machine)",
    )
    args = parser.parse_args(argv)
    wl = WORKLOADS[args.workload]
    base = {"workload": wl.name, "model": wl.model, "batch_size": wl.batch_size, "full_size": wl.full_size}
    try:
        import torch
    except ImportError as err:
        info = run_info("torch", "unknown", "unknown", {"torch": None})
        for phase in args.phases.split(","):
            for dtype in args.dtypes.split(","):
                append_record(
                    args.out,
                    {
                        **info,
                        **base,
                        "kind": "skipped",
                        "phase": phase,
                        "dtype": dtype,
                        "seeds": 1,
                        "strategy": "torch-eager",
                        "reason": f"torch not importable: {err}",
                    },
                )
        print(f"torch not importable ({err}): recorded as skipped", flush=True)
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    name = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    kind = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    info = run_info(
        "torch",
        kind,
        "gpu" if device.type == "cuda" else "cpu",
        {"torch": torch.__version__, "cuda": torch.version.cuda},
    )
    for dtype in args.dtypes.split(","):
        ref = Reference(torch, wl, device, dtype, args.max_batches)
        for phase in args.phases.split(","):
            rec = {**info, **base, "dtype": dtype, "phase": phase, "seeds": 1, "strategy": "torch-eager"}
            try:
                rec.update(measure(torch, ref, phase, args.repeats))
            except Exception as err:  # noqa: BLE001 - record and go on
                rec.update(kind="error", error=f"{type(err).__name__}: {err}"[:800])
            append_record(args.out, rec)
            print(
                f"torch {wl.name} {phase} {dtype}: "
                + (
                    f"{rec['epoch_s_median']:.4f} s/epoch, loss {rec['quality']['train_loss']['mean']:.3f}"
                    if rec["kind"] == "measurement"
                    else rec["error"]
                ),
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
