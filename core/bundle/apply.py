"""Transform a large vector file with a bundle's adapter: chunked, resumable, never a half file.

The input ``.npy`` is memory-mapped; outputs go into a memmapped ``<out>.partial`` and, after every
chunk is flushed, a small ``<out>.progress.json`` sidecar records how many rows are done and which
bundle and input they came from. Run again after an interruption and the work continues from the
last recorded chunk (if bundle, input and settings are unchanged; otherwise it starts over). Only a
complete result is renamed to ``<out>``; the sidecar is then removed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from core.bundle.archive import BundleLimits
from core.bundle.runtime import LoadedBundle, load_bundle
from core.errors import BundleError, VectorFileError
from core.progress import ProgressFn, StopFn, check_stop, no_progress
from core.store.files import atomic_write_text, publish
from core.store.vectors import as_storage_dtype

DEFAULT_CHUNK = 65_536


def partial_paths(out: Path) -> tuple[Path, Path]:
    """(partial matrix, progress sidecar) used while ``out`` is being written."""
    return out.with_name(out.name + ".partial"), out.with_name(out.name + ".progress.json")


def _open_input(path: Path, label: str, dim: int, rows: int | None = None) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise VectorFileError(path, f"{label} file does not exist") from None
    except (ValueError, OSError) as exc:
        raise VectorFileError(path, f"not a readable .npy matrix ({exc})") from exc
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise VectorFileError(path, f"{label} have shape {arr.shape}; the bundle's adapter expects (n, {dim})")
    if rows is not None and arr.shape[0] != rows:
        raise VectorFileError(path, f"{label} have {arr.shape[0]} rows, the main input has {rows}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise VectorFileError(path, f"{label} must be float16/32/64, got {arr.dtype}")
    return arr


def _identity(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"path": str(path.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def apply_bundle(bundle: str | Path | LoadedBundle, vectors: str | Path, out: str | Path, *,
                 old_vectors: str | Path | None = None, normalise_output: bool = False,
                 chunk_rows: int = DEFAULT_CHUNK, limits: BundleLimits | None = None,
                 on_progress: ProgressFn | None = None, should_stop: StopFn | None = None) -> dict[str, Any]:
    """Write ``bundle(vectors)`` to ``out`` (.npy float32) in chunks; see the module docstring."""
    loaded = bundle if isinstance(bundle, LoadedBundle) else load_bundle(bundle, limits)
    report = on_progress or no_progress
    src, out = Path(vectors), Path(out)
    if src.resolve() == out.resolve():
        raise BundleError(f"{out}: the output must not overwrite the input vectors")
    x = _open_input(src, "vectors", loaded.in_dim)
    old = None
    if loaded.needs_old:
        if old_vectors is None:
            raise BundleError(f"{loaded.path}: this fusion bundle also needs the old model's query vectors "
                              "(--old-vectors)")
        old = _open_input(Path(old_vectors), "old vectors", loaded.out_dim, rows=x.shape[0])
    n = int(x.shape[0])
    partial, sidecar = partial_paths(out)
    state = {"bundle": loaded.manifest["files"][loaded.manifest["adapter"]["file"]]["sha256"],
             "input": _identity(src), "old_input": _identity(Path(old_vectors)) if old_vectors else None,
             "rows": n, "dim": loaded.out_dim, "normalise_output": normalise_output, "chunk_rows": int(chunk_rows)}
    done, matrix = _resume(partial, sidecar, state)
    resumed_from = done
    if matrix is None:
        out.parent.mkdir(parents=True, exist_ok=True)
        matrix = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=(n, loaded.out_dim))
        atomic_write_text(sidecar, json.dumps({**state, "done": 0}))
    try:
        report(done, n, {"stage": "applying the bundle"})
        while done < n:
            check_stop(should_stop)
            end = min(done + int(chunk_rows), n)
            block = as_storage_dtype(np.asarray(x[done:end]), "float32", str(src), done)
            old_block = None if old is None else as_storage_dtype(np.asarray(old[done:end]), "float32",
                                                                  str(old_vectors), done)
            matrix[done:end] = loaded(block, old_block, normalise_output)
            matrix.flush()
            done = end
            atomic_write_text(sidecar, json.dumps({**state, "done": done}))
            report(done, n, {"stage": "applying the bundle"})
    except VectorFileError:  # a bad input row: fixing the input changes its identity, so nothing can resume
        matrix = None
        _discard(partial, sidecar)
        raise
    finally:
        del matrix
    publish(partial, out)
    sidecar.unlink(missing_ok=True)
    return {"path": str(out.resolve()), "rows": n, "dim": loaded.out_dim, "resumed_from": resumed_from,
            "normalised": normalise_output, "bundle": str(loaded.path)}


def _resume(partial: Path, sidecar: Path, state: dict[str, Any]) -> tuple[int, np.memmap | None]:
    """Rows already done and the open partial matrix, when a matching earlier run left them."""
    if not (partial.exists() and sidecar.exists()):
        _discard(partial, sidecar)
        return 0, None
    try:
        saved = json.loads(sidecar.read_text(encoding="utf-8"))
        done = int(saved.get("done", -1))
        if {k: saved.get(k) for k in state} != state or not 0 <= done <= state["rows"]:
            raise ValueError("a different bundle, input or setting")
        matrix = np.load(partial, mmap_mode="r+", allow_pickle=False)
        if matrix.shape != (state["rows"], state["dim"]) or matrix.dtype != np.float32:
            raise ValueError("partial output of another shape")
    except (OSError, ValueError, json.JSONDecodeError):
        _discard(partial, sidecar)
        return 0, None
    return done, matrix


def _discard(partial: Path, sidecar: Path) -> None:
    for path in (partial, sidecar):
        if path.exists():
            os.unlink(path)
