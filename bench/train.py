"""Training throughput of the trainable kinds: pairs per second per epoch, CPU and (when lent) GPU.

Measured: ``fit_adapter`` as users run it. On the CPU it runs in a single-threaded child process
and counts CPU seconds, so other work on a shared machine does not distort the rates; on a GPU it
counts wall time. An epoch's rate is taken between its first and last progress callbacks (steps
only: validation and the closed-form start are left out and reported as the fit's total time);
the best of 2 epochs is kept. Floor: a bare PyTorch loop over the same adapter, objective, batch
size and optimiser (gather a batch, loss, backward, AdamW step; autocast as the core loop uses it
on CUDA), with no scheduler, progress, cancellation or per-step loss read-back; best of two
one-epoch runs. Target: the core loop keeps at least 0.8x of the bare loop's rate; on a GPU an MLP
adapter trains at 1M pairs/s or more (at batch 8192). Two more rows compare the heads with each
other: bt2's orthogonal head trains at 0.5x or more of an MLP head's rate at the same width and
batch (at the benchmark's 384 dims and again at 1,536), and bct / bt2 at ten times the classes keep
0.8x or more of their rate (sampled softmax).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from bench.common import NO_GPU, Row, Target, area_result, emit, run_child, timed
from embridge.core.synthetic import class_structured_pair
from embridge.core.train import PairData, fit_adapter, resolve_config
from embridge.core.train.fit import build_for_training, training_rows

KINDS = ("lowrank", "mlp", "bct", "bt2", "fct")
LOOP_TARGET = Target("ratio_min", 0.8, ">= 0.8x bare loop")
HEAD_TARGET = Target("ratio_min", 0.5, ">= 0.5x an MLP head")
CLASSES_TARGET = Target("ratio_min", 0.8, ">= 0.8x the rate at 1/10 the classes")
GPU_TARGET = Target("abs_min", 1_000_000.0, ">= 1M pairs/s")


def make_data(n_train: int, n_val: int, dim: int, seed: int) -> PairData:
    pair = class_structured_pair(n_train + n_val, 100, dim, dim, 50, seed=seed)
    tr, va = pair.subset(slice(0, n_train)), pair.subset(slice(n_train, None))
    return PairData(tr.old, tr.new, va.old, va.new, tr.labels, va.labels)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def clock(device: str) -> Callable[[], float]:
    """CPU seconds of this (single-threaded) process on the CPU, wall seconds on a GPU."""
    return time.perf_counter if device.startswith("cuda") else time.process_time


def core_rate(kind: str, data: PairData, settings: dict[str, Any]) -> tuple[float, float, int]:
    """(best epoch's pairs/s, fit seconds, epochs timed) of fit_adapter; the best epoch is the one
    least disturbed by other work on the machine."""
    stamps: dict[int, list[float]] = {}
    now = clock(str(settings["device"]))

    def progress(done: int, total: int, info: dict[str, Any]) -> None:
        stamps.setdefault(int(info.get("epoch", 0)), []).append(now())

    seconds, result = timed(lambda: fit_adapter(kind, data, settings, progress))
    if result.status != "completed":
        raise RuntimeError(f"{kind} fit ended {result.status}: {result.reason}")
    bs = min(int(settings["batch_size"]), len(data.old_train))
    rates = [(len(t) - 1) * bs / (t[-1] - t[0]) for e, t in stamps.items() if e >= 1 and len(t) > 2]
    if not rates:
        raise ValueError(f"{kind}: too few steps per epoch to time ({len(data.old_train)} pairs, batch {bs})")
    return max(rates), seconds, len(rates)


def bare_rate(kind: str, data: PairData, settings: dict[str, Any], steps: int, segments: int = 2) -> float:
    """Pairs/s of a hand-written loop over the same modules (the floor): best of ``segments`` runs
    of ``steps`` steps, as the core side keeps its best epoch."""
    _, full = resolve_config(kind, settings)
    device = torch.device(settings["device"])
    adapter, objective, labels = build_for_training(kind, data, full)
    adapter.prepare_training()
    adapter.to(device).train()
    objective.to(device).train()
    tensors = {k: v.to(device) for k, v in training_rows(kind, data, labels).items()}
    start_epoch = getattr(objective, "start_epoch", None)
    if start_epoch is not None:  # mined hard negatives, as the core loop has them (untimed on both sides)
        start_epoch(adapter, 1, tensors)
    params = [p for p in [*adapter.parameters(), *objective.parameters()] if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=float(full["lr"]), weight_decay=float(full["weight_decay"]))
    n = len(tensors["new"])
    bs = min(int(full["batch_size"]), n)
    amp = device.type == "cuda" and bool(full["amp"])
    dtype = torch.bfloat16 if amp and torch.cuda.is_bf16_supported() else torch.float16

    def loop(count: int) -> None:
        order = torch.randperm(n).to(device)
        for i in range(count):
            start = (i * bs) % max(n - bs + 1, 1)
            batch = {k: v[order[start : start + bs]] for k, v in tensors.items()}
            with torch.autocast(device_type=device.type, dtype=dtype, enabled=amp):
                loss = objective(adapter, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if hasattr(objective, "after_step"):  # the sampled classifier rows, as the core loop does
                objective.after_step(float(full["lr"]), float(full["weight_decay"]), 1.0)
        _sync(str(device))

    loop(min(3, steps))  # warm-up (allocator, kernels)
    now = clock(str(device))
    seconds = float("inf")
    for _ in range(segments):
        start = now()
        loop(steps)
        seconds = min(seconds, now() - start)
    adapter.finish_training()
    return steps * bs / seconds


def measure(kind: str, data: PairData, device: str, batch_size: int, epochs: int) -> Row:
    settings = {"epochs": epochs, "device": device, "batch_size": batch_size, "patience": epochs + 1}
    rate, fit_s, n_epochs = core_rate(kind, data, settings)
    steps = max(5, len(data.old_train) // batch_size)
    floor = bare_rate(kind, data, settings, steps)
    gpu = device.startswith("cuda")
    target = GPU_TARGET if gpu and kind == "mlp" and batch_size >= 4096 else LOOP_TARGET
    unit = "pairs/s" if gpu else "pairs per CPU-s"
    return Row(f"{kind} on {device}, batch {batch_size}", unit, rate, floor, "bare PyTorch loop", target,
               details={"fit_seconds": fit_s, "epochs_measured": n_epochs, "train_pairs": len(data.old_train),
                        "ratio_to_bare_loop": rate / floor})


def head_vs_mlp(rows: list[Row]) -> list[Row]:
    """bt2's orthogonal head against an MLP head at the same width and batch (rows already measured)."""
    by_name = {r.name: r for r in rows}
    out = []
    for r in rows:
        if r.name.startswith("bt2 on "):
            mlp = by_name.get(r.name.replace("bt2 on ", "mlp on ", 1))
            if mlp is not None and mlp.measured:
                out.append(Row(f"bt2 head vs mlp head, {r.name[len('bt2 on '):]}", r.unit, r.measured,
                               mlp.measured, "mlp head, same width and batch", HEAD_TARGET))
    return out


def wide_head_rows(tiny: bool, seed: int) -> list[Row]:
    """bt2 against an MLP head at a text model's width (1,536 dims, 1,568 with bt2's widening), where
    an orthogonal layer that re-solves its full width every step falls far behind a dense one."""
    n_train, dim = (600, 160) if tiny else (2_000, 1_536)
    data = make_data(n_train, 300, dim, seed)
    settings = {"epochs": 2, "device": "cpu", "batch_size": 256, "patience": 3}
    rates = {kind: core_rate(kind, data, settings)[0] for kind in ("bt2", "mlp")}
    return [Row(f"bt2 head vs mlp head at {dim:,} dims, cpu, batch 256", "pairs per CPU-s", rates["bt2"],
                rates["mlp"], "mlp head, same width and batch", HEAD_TARGET, details={"train_pairs": n_train})]


def class_count_rows(tiny: bool, seed: int) -> list[Row]:
    """bct / bt2 pairs/s at 10x the classes: the sampled softmax keeps a step's cost flat."""
    n_train, dim, few, many = (2_000, 32, 100, 1_000) if tiny else (20_000, 384, 1_000, 10_000)
    settings = {"epochs": 2, "device": "cpu", "batch_size": 256, "patience": 3, "softmax_classes": 256}
    rows = []
    rates: dict[tuple[str, int], float] = {}
    for classes in (few, many):
        pair = class_structured_pair(n_train + 500, classes, dim, dim, classes // 2, seed=seed)
        tr, va = pair.subset(slice(0, n_train)), pair.subset(slice(n_train, None))
        data = PairData(tr.old, tr.new, va.old, va.new, tr.labels, va.labels)
        for kind in ("bct", "bt2"):
            rates[kind, classes] = core_rate(kind, data, settings)[0]
    for kind in ("bct", "bt2"):
        rows.append(Row(f"{kind} at {many:,} classes vs {few:,}, batch 256", "pairs per CPU-s",
                        rates[kind, many], rates[kind, few], f"{kind} at {few:,} classes", CLASSES_TARGET,
                        details={"softmax_classes": 256, "train_pairs": n_train}))
    return rows


def measure_plans(plans: list[tuple[str, int, int]], tiny: bool, seed: int) -> list[Row]:
    dim, n_val = (32, 300) if tiny else (384, 2_000)
    rows: list[Row] = []
    datasets: dict[int, PairData] = {}
    for dev, bs, n_train in plans:
        data = datasets.setdefault(n_train, make_data(n_train, n_val, dim, seed))
        for kind in KINDS if bs == 256 else ("mlp",):
            rows.append(measure(kind, data, dev, min(bs, n_train // 4), 2))
    return rows


def run(tiny: bool, device: str, seed: int = 0) -> dict[str, Any]:
    started = time.time()
    n_cpu = 1_000 if tiny else 10_000
    cpu_plans = [("cpu", 256, n_cpu), ("cpu", 4096, n_cpu)]
    child = run_child("bench.train", [*(["--tiny"] if tiny else []), "--seed", str(seed)], 3_600,
                      {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})
    if "error" in child:
        raise RuntimeError(f"CPU training benchmark failed: {child['error']}")
    rows: list[Row | dict[str, Any]] = list(child["rows"])
    notes = ["CPU rows run in a single-threaded child process and count CPU seconds (robust to other jobs on "
             "a shared machine); a multi-core machine trains faster in wall time. GPU rows are wall time."]
    want_gpu = device in ("auto", "cuda") or device.startswith("cuda:")
    gpu_plans: list[tuple[str, int, int]] = []
    if want_gpu and torch.cuda.is_available():
        gpu = "cuda" if device == "auto" else device
        gpu_plans = [(gpu, 256, 2_000 if tiny else 200_000), (gpu, 8192, 40_000 if tiny else 1_000_000)]
        rows += measure_plans(gpu_plans, tiny, seed)
    else:
        rows.append(Row("mlp on GPU, batch 8192", "pairs/s", None, None, "bare PyTorch loop", GPU_TARGET, NO_GPU))
        notes.append(f"GPU: {NO_GPU}; on a GPU machine run `python -m bench.run_all --only train --device cuda`.")
    settings = {"dim": 32 if tiny else 384, "epochs": 2, "plans": cpu_plans + gpu_plans, "loss": "method defaults",
                "cpu_threads": 1}
    return area_result("train", rows, settings, notes, started, device)


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    n_cpu = 1_000 if a.tiny else 10_000
    rows = measure_plans([("cpu", 256, n_cpu), ("cpu", 4096, n_cpu)], a.tiny, a.seed)
    rows += head_vs_mlp(rows) + wide_head_rows(a.tiny, a.seed) + class_count_rows(a.tiny, a.seed)
    emit({"rows": [r.to_dict() for r in rows]})


if __name__ == "__main__":
    main()
