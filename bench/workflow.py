"""The whole workflow a user runs, end to end, on vectors-only models: every step beside its floor.

Synthetic old-model gallery vectors (N unit rows around 2,000 centres) in an uncompressed ``.npz``
with keys ``d<i>``, and a new model's vectors of a seeded sample of that gallery (20,000 items; a
rotation of the old ones plus noise) in a second ``.npz``. The steps are the command line's, each in
a fresh process (its peak resident memory is that process's ``VmHWM``; the one-off imports of torch,
faiss, sqlite-utils and the engine's modules, all but the store connectors and the Ray scale-out, are done before
the clock starts): ``model add`` of both files
(referenced, not copied; not timed), ``import --format vectors --model old`` (the gallery becomes
new items and the old model's vector set), ``import --format vectors --model new`` (attach the
sample to those items), ``train --method auto`` (every default candidate: closed forms, lowrank,
mlp, fusion, cascade), ``report`` (old/old and new->old over the whole old gallery), ``plan`` and
``bundle export``. Floors, measured in the same run on the same files: import: reading the
``.npz`` whole, its bytes sha256ed and written to a file synced to disk, and its keys inserted
into a fresh SQLite database built by the workspace's own schema migrations (the same tables and
indexes; one transaction, WAL); attach:
the same read, hash and synced write of the sample's file, and its keys looked up in the
workspace's item table through the key index; ``auto``: the raw fit of every candidate it ran (one moments pass and the solves for the
closed forms, a bare PyTorch loop of the same width, batches, loss and recorded epochs for each
trainable one) plus raw faiss for its dev and held-out searches (:mod:`bench.auto_floor`; one row
per candidate shows its recorded time); report: raw faiss for every search it makes, on the same
matrices at its depth (old/old and new->old on the whole old gallery's index; new/new, old/old and new->old
on the evaluation sample; the least-confident backfill order's search of every sample item against the others)
and the partial-backfill curve's score products as plain matrix products, with an informational row
against the headline's two searches alone; export: the bundle's own TorchScript adapter run over the stored gallery (when the
bundle carries a transformed gallery) and the bundle's bytes sha256ed and written to a synced
stored zip, after the raw calls that make its adapter files (``torch.jit.save`` of its TorchScript;
for a non-linear layer ``torch.onnx.export`` and one onnxruntime run on the probes; a safetensors
write of its tensors). ``plan`` has no raw counterpart: it reads the report and times each layer for a fixed
0.1 s on 4,096 random vectors, work that does not grow with N, so only its time and memory are
shown. Targets: time <= 1.3x the floor; peak memory <= the vector bytes + 1 GiB; workspace size on
disk <= 1.1x the vector bytes it holds.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import Row, Target, area_result, run_child
from bench.data import clustered_rows

SIZES = ((1_000_000, 384), (100_000, 768))  # one size: `python -m bench.workflow --rows N --dim D`
SAMPLE = 20_000
TINY_SIZES = ((2_000, 32),)
TINY_SAMPLE = 400
TINY_TRAIN = ("--time-budget", "2")  # a smoke test: the cheapest candidates only
TIME = Target("ratio_max", 1.3, "<= 1.3x the floor")
DISK = Target("ratio_max", 1.1, "<= 1.1x the vector bytes held")
MiB = 2**20
IMPORT_FLOOR = "read, sha256 and synced write of old.npz + its keys inserted into SQLite"
ATTACH_FLOOR = "read, sha256 and synced write of new.npz + its keys looked up"
REPORT_FLOOR = ("raw faiss for every search the report makes (old/old and new->old over the whole old gallery, "
                "with the exact products behind an IVF index's recall; new/new, old/old, new->old and the "
                "least-confident order's self search on the evaluation sample) + the partial-backfill curve's score products")
HEADLINE_FLOOR = ("raw faiss of old/old and new->old over the whole old gallery alone (with an IVF index's recall "
                  "products), and reading")


def write_inputs(folder: Path, n: int, dim: int, sample: int, seed: int = 0) -> tuple[Path, Path]:
    """``old.npz`` (the gallery, keys ``d<i>``) and ``new.npz`` (a seeded sample, the new model)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((2_000, dim)).astype(np.float32) / np.float32(np.sqrt(dim))
    old = clustered_rows(rng, centres, n, 1.0)
    keys = np.array([f"d{i}" for i in range(n)])
    old_path, new_path = folder / "old.npz", folder / "new.npz"
    np.savez(old_path, ids=keys, vectors=old)
    rows = np.sort(rng.choice(n, size=min(sample, n), replace=False))
    rotation = np.linalg.qr(rng.standard_normal((dim, dim)))[0].astype(np.float32)
    new = old[rows] @ rotation + np.float32(0.3 / np.sqrt(dim)) * rng.standard_normal((len(rows), dim), dtype=np.float32)
    new /= np.linalg.norm(new, axis=1, keepdims=True)
    np.savez(new_path, ids=keys[rows], vectors=new.astype(np.float32))
    return old_path, new_path


def disk_bytes(folder: Path) -> int:
    """Bytes the folder's files occupy on disk (allocated blocks, as ``du`` counts)."""
    return sum(p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file())


def _child(args: list[str], timeout_s: float) -> dict[str, Any]:
    out = run_child("bench.workflow_child", args, timeout_s, env={"QT_QPA_PLATFORM": "offscreen"})
    if "error" in out:
        raise RuntimeError(f"{' '.join(args[:4])}: {out['error']}")
    return out


def _vector_file(db: Path, model: str) -> str:
    """The workspace-relative file of ``model``'s (first) vector set."""
    import sqlite3

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return str(conn.execute("select v.file from vector_sets v join models m on m.id = v.model_id "
                                "where m.name = ? order by v.id", [model]).fetchone()[0])
    finally:
        conn.close()


def _setup(ws: Path, old: Path, new: Path) -> None:
    """``embridge init`` and ``model add`` of both files (they reference the files: nothing to time)."""
    import contextlib
    import io

    from embridge.core.cli.main import main

    for argv in (["init"], ["model", "add", "--name", "old", "--path", str(old), "--role", "old"],
                 ["model", "add", "--name", "new", "--path", str(new), "--role", "new"]):
        with contextlib.redirect_stdout(io.StringIO()):
            if main([*argv, "--workspace", str(ws)]) != 0:
                raise RuntimeError(f"embridge {' '.join(argv)} failed")


def run_size(n: int, dim: int, sample: int, tmp: Path, timeout_s: float,
             train_extra: tuple[str, ...] = (), io_only: bool = False) -> tuple[list[Row], dict[str, Any]]:
    """Every step of the workflow at one size, with its floors; (rows, per-step details).

    ``io_only``: the import and attach steps alone (with their floors), for a quick measurement of
    the storage path where training a million-row gallery would take too long.
    """
    old, new = write_inputs(tmp, n, dim, sample)
    ws, bundle = tmp / "ws", tmp / "upgrade.zip"
    vector_bytes = (n + min(sample, n)) * dim * 4
    memory = Target("abs_max", vector_bytes / MiB + 1024, f"<= {vector_bytes / MiB + 1024:,.0f} MiB "
                    "(vector bytes + 1 GiB)")
    size = f"{n:,} x {dim}"

    def step(*argv: str) -> dict[str, Any]:
        out = _child(["step", "--", *argv, "--workspace", str(ws)], timeout_s)
        print(json.dumps({"size": size, "step": argv[:2], **out}), file=sys.stderr, flush=True)
        return out

    def floor(*argv: str) -> dict[str, Any]:
        out = _child(["floor", *argv], timeout_s)
        print(json.dumps({"size": size, "floor": argv[0], **out}), file=sys.stderr, flush=True)
        return out

    steps: dict[str, dict[str, Any]] = {}
    _setup(ws, old, new)
    steps["import the old gallery"] = step("import", "--format", "vectors", "--path", str(old), "--model", "old",
                                           "--split", "gallery")
    steps["attach the new model's sample"] = step("import", "--format", "vectors", "--path", str(new), "--model",
                                                  "new")
    held_after_attach = disk_bytes(ws)
    if io_only:
        return _io_rows(steps, size, memory, vector_bytes, held_after_attach, {
            "import the old gallery": floor("import", str(old), str(tmp / "raw_old"), str(tmp / "floor.db")),
            "attach the new model's sample": floor("attach", str(new), str(tmp / "raw_new"),
                                                   str(ws / "embridge.db"))})
    steps["train --method auto"] = step("train", "--method", "auto", "--device", "cpu", *train_extra)
    steps["report (whole old gallery)"] = step("report", "--bootstrap", "200")
    steps["plan"] = step("plan", "--device", "cpu")
    steps["bundle export"] = step("bundle", "export", "--out", str(bundle))
    held_at_end = disk_bytes(ws)
    gallery_file = ws / _vector_file(ws / "embridge.db", "old")
    floors = {
        "import the old gallery": (IMPORT_FLOOR, floor("import", str(old), str(tmp / "raw_old"), str(tmp / "floor.db"))),
        "attach the new model's sample": (ATTACH_FLOOR, floor("attach", str(new), str(tmp / "raw_new"), str(ws / "embridge.db"))),
        **step_floors(floor, ws, old, new),
        "bundle export": ("TorchScript save, ONNX export + onnxruntime check, safetensors write, the adapter over "
                          "the gallery when carried, synced write and sha256 of the bundle's bytes",
                          floor("bundle", str(bundle), str(gallery_file), str(tmp / "raw_bundle.zip"))),
    }
    rows: list[Row] = []
    for name, out in steps.items():
        floor_name, raw = floors.get(name, ("", None))
        rows.append(Row(f"{name}, {size}", "s", out["seconds"], raw["seconds"] if raw else None, floor_name,
                        TIME if raw else None,
                        details={"floor_peak_mib": raw["vm_hwm_bytes"] / MiB if raw else None,
                                 **({"floor_parts": raw["parts"]} if raw and "parts" in raw else {})}))
        rows.append(Row(f"{name}, {size}, peak memory", "MiB", out["vm_hwm_bytes"] / MiB, None,
                        "", memory, details={"vector_mib": vector_bytes / MiB}))
    report_raw = floors["report (whole old gallery)"][1]
    rows.append(Row(f"report beside its headline searches alone, {size}", "s",
                    steps["report (whole old gallery)"]["seconds"], report_raw["headline_seconds"], HEADLINE_FLOOR,
                    None, "the report's other searches and curves are outside this floor"))
    rows += candidate_rows(floors["train --method auto"][1], size)
    for when, held in (("after attaching", held_after_attach), ("at the end", held_at_end)):
        rows.append(Row(f"workspace on disk {when}, {size}", "MiB", held / MiB, vector_bytes / MiB,
                        "vector bytes held", DISK))
    return rows, {"vector_bytes": vector_bytes, "steps": steps}


def step_floors(floor: Any, ws: Path, old: Path, new: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    """The floors of ``auto`` and ``report`` (:mod:`bench.auto_floor`), measured on the runs just made."""
    return {
        "train --method auto": ("raw fits of every candidate + raw faiss evaluation",
                                floor("auto", str(ws), str(old), str(new))),
        "report (whole old gallery)": (REPORT_FLOOR, floor("report", str(ws), str(old), str(new))),
    }


def candidate_rows(raw: dict[str, Any], size: str) -> list[Row]:
    """One informational row per ``auto`` candidate: its recorded time, epochs and evaluations."""
    return [Row(f"  auto candidate {c['kind']}, {size}", "s", float(c.get("duration_s") or 0.0), None, "", None,
                c.get("reason") or "" if c.get("status") == "skipped" else "",
                details={k: c.get(k) for k in ("status", "epochs", "evaluations", "val_metric")})
            for c in raw.get("candidates") or []]


def _io_rows(steps: dict[str, dict[str, Any]], size: str, memory: Target, vector_bytes: int, held: int,
             floors: dict[str, dict[str, Any]]) -> tuple[list[Row], dict[str, Any]]:
    """Rows of an ``io_only`` run: import and attach beside their floors, and the workspace after them."""
    names = {"import the old gallery": IMPORT_FLOOR, "attach the new model's sample": ATTACH_FLOOR}
    rows: list[Row] = []
    for name, out in steps.items():
        rows.append(Row(f"{name}, {size}", "s", out["seconds"], floors[name]["seconds"], names[name], TIME,
                        details={"floor_peak_mib": floors[name]["vm_hwm_bytes"] / MiB}))
        rows.append(Row(f"{name}, {size}, peak memory", "MiB", out["vm_hwm_bytes"] / MiB, None, "", memory,
                        details={"vector_mib": vector_bytes / MiB}))
    rows.append(Row(f"workspace on disk after attaching, {size}", "MiB", held / MiB, vector_bytes / MiB,
                    "vector bytes held", DISK))
    return rows, {"vector_bytes": vector_bytes, "steps": steps, "io_only": True}


def run(tiny: bool = False, device: str = "cpu", sizes: tuple[tuple[int, int], ...] | None = None,
        sample: int | None = None, work_dir: str | None = None, train_extra: tuple[str, ...] = (),
        io_only: bool = False) -> dict[str, Any]:
    started = time.time()
    sizes = sizes or (TINY_SIZES if tiny else SIZES)
    sample = sample or (TINY_SAMPLE if tiny else SAMPLE)
    rows: list[Row] = []
    details: dict[str, Any] = {}
    for n, dim in sizes:
        tmp = Path(tempfile.mkdtemp(prefix="embridge-workflow-", dir=work_dir))
        try:
            size_rows, details[f"{n}x{dim}"] = run_size(n, dim, sample, tmp, 300 if tiny else 7200,
                                                        TINY_TRAIN if tiny else train_extra, io_only)
            rows += size_rows
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    budget = f"; train arguments {' '.join(train_extra)}" if train_extra and not tiny else ""
    notes = [f"sizes run: {', '.join(f'{n:,} x {d}' for n, d in sizes)}, new-model sample {sample:,}; "
             f"training on CPU (no GPU in this run){budget}"]
    if io_only:
        notes.append("import and attach only (`--io-only`): training, report, plan and export were not run")
    return area_result("workflow", rows, {"sizes": sizes, "sample": sample, "details": details}, notes,
                       started, device)


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.workflow --rows N --dim D``: one size, results merged into bench/results."""
    import argparse

    from bench.common import RESULTS_DIR, write_json

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--sample", type=int, default=SAMPLE)
    p.add_argument("--work-dir", default=None)
    p.add_argument("--io-only", action="store_true", help="only the import and attach steps, with their floors "
                   "(replacing just those rows of an existing result; its notes are kept as they are)")
    p.add_argument("--train-arg", action="append", default=[], metavar="ARG",
                   help="passed on to `train --method auto` (repeat: --train-arg=--time-budget --train-arg=600)")
    args = p.parse_args(argv)
    result = run(sizes=((args.rows, args.dim),), sample=args.sample, work_dir=args.work_dir,
                 train_extra=tuple(args.train_arg), io_only=args.io_only)
    path = RESULTS_DIR / "workflow.json"
    if path.exists() and args.io_only:  # only the rows it measured are replaced, in place
        old = json.loads(path.read_text())
        fresh = {r["name"]: r for r in result["rows"]}
        size = f"{args.rows}x{args.dim}"
        old["settings"].setdefault("details", {}).setdefault(size, {})["io_only_rerun"] = \
            result["settings"]["details"][size]
        result = {**old, "rows": [fresh.pop(r["name"], r) for r in old["rows"]] + list(fresh.values())}
    elif path.exists():  # keep the other sizes' rows, details and notes (a note of this size's run is replaced)
        old = json.loads(path.read_text())
        tag = f", {args.rows:,} x {args.dim}"
        result["rows"] = [r for r in old["rows"] if tag not in r["name"]] + result["rows"]
        result["notes"] = [n for n in old["notes"] if n not in result["notes"]] + result["notes"]
        details = {**old["settings"].get("details", {}), **result["settings"]["details"]}
        sizes = [s for s in old["settings"].get("sizes", []) if list(s) != [args.rows, args.dim]]
        result["settings"] = {**result["settings"], "details": details, "sizes": [*sizes, [args.rows, args.dim]]}
    write_json(path, {**result, "tiny": False})
    print(json.dumps([r for r in result["rows"]], indent=1), file=sys.stderr)


if __name__ == "__main__":
    main()
