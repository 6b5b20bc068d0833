"""One step of the workflow benchmark, or its floor, in a process of its own (for its peak memory).

``python -m bench.workflow_child step -- <embridge arguments>`` runs the command line in-process and
times it; ``python -m bench.workflow_child floor KIND ...`` runs the raw operation the step is
compared with. Either prints one JSON line: ``seconds`` and ``vm_hwm_bytes`` (peak resident memory).
"""

from __future__ import annotations

import io
import os
import sys
import time
import zipfile
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np

from bench.common import emit

# what the commands import on first use: loaded before the clock starts, so a step times its work
# (at toy sizes the imports would be most of it); ``import_s`` records what they took
WARM_IMPORTS = ("torch", "faiss", "core.cli.main", "core.embed", "core.importers", "core.train.runs",
                "core.report.build", "core.plan", "core.bundle")


def _step(argv: list[str]) -> None:
    import importlib

    started = time.perf_counter()
    for name in WARM_IMPORTS:
        importlib.import_module(name)
    import_s = time.perf_counter() - started
    from core.cli.main import main

    start = time.perf_counter()
    with redirect_stdout(io.StringIO()) as out:
        code = main(argv)
    seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"embridge {' '.join(argv)} exited {code}: {out.getvalue()[-500:]}")
    emit({"seconds": seconds, "import_s": import_s})


def _read_write(src: Path, dst: Path) -> float:
    """Read an .npz's arrays whole and write their bytes to ``dst`` (synced): the import's floor."""
    start = time.perf_counter()
    with np.load(src) as data:
        arrays = [data[name] for name in data.files]
    with open(dst, "wb") as fh:
        for array in arrays:
            fh.write(np.ascontiguousarray(array).data)
        fh.flush()
        os.fsync(fh.fileno())
    return time.perf_counter() - start


def _fits(old: Path, new: Path) -> float:
    """Raw closed-form fits (ridge least squares and an orthogonal Procrustes) on the sample's pairs."""
    with np.load(new) as data:
        keys, target_rows = data["ids"], data["vectors"]
    with np.load(old) as data:
        index = {k: i for i, k in enumerate(data["ids"].tolist())}
        source = data["vectors"][[index[k] for k in keys.tolist()]]
    start = time.perf_counter()
    x = np.hstack([target_rows, np.ones((len(target_rows), 1), np.float32)])
    np.linalg.solve(x.T @ x + 1e-3 * np.eye(x.shape[1], dtype=np.float32), x.T @ source)
    u, _, vt = np.linalg.svd(target_rows.T @ source, full_matrices=False)
    _ = u @ vt
    return time.perf_counter() - start


def _search(old: Path, new: Path, k: int) -> float:
    """Raw faiss: an exact inner-product index over the whole old gallery, searched by the sample."""
    import faiss

    with np.load(old) as data:
        gallery = data["vectors"]
    with np.load(new) as data:
        queries = data["vectors"]
    start = time.perf_counter()
    index = faiss.IndexFlatIP(gallery.shape[1])
    index.add(gallery)
    index.search(queries[:, : gallery.shape[1]], k)
    return time.perf_counter() - start


def _bundle_bytes(bundle: Path, dst: Path) -> float:
    """Write as many bytes as the bundle's members hold, stored in a zip (synced)."""
    with zipfile.ZipFile(bundle) as zf:
        members = [(info.filename, zf.read(info.filename)) for info in zf.infolist()]
    start = time.perf_counter()
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as out:
        for name, payload in members:
            out.writestr(name, payload)
    with open(dst, "rb+") as fh:
        os.fsync(fh.fileno())
    return time.perf_counter() - start


def main(argv: list[str]) -> None:
    if argv[0] == "step":
        _step(argv[2:] if argv[1:2] == ["--"] else argv[1:])
        return
    kind, args = argv[1], argv[2:]
    if kind in ("auto", "report"):  # floors of the auto and report steps, with their parts
        from bench.auto_floor import auto_floor, report_floor

        emit((auto_floor if kind == "auto" else report_floor)(Path(args[0]), Path(args[1]), Path(args[2])))
        return
    if kind == "read_write":
        seconds = _read_write(Path(args[0]), Path(args[1]))
    elif kind == "fits":
        seconds = _fits(Path(args[0]), Path(args[1]))
    elif kind == "search":
        seconds = _search(Path(args[0]), Path(args[1]), int(args[2]))
    elif kind == "bundle":
        seconds = _bundle_bytes(Path(args[0]), Path(args[1]))
    else:
        raise SystemExit(f"unknown floor {kind}")
    emit({"seconds": seconds})


if __name__ == "__main__":
    main(sys.argv[1:])
