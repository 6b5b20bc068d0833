"""Transform a large vector file with a bundle's adapter: chunked, resumable, never a half file.

The input ``.npy`` is memory-mapped; outputs go into ``<out>.partial``, whose disk space is reserved
when it is created (so a full disk is one error at the start, never a crash mid-write; see
:mod:`embridge.core.bundle.matrix_out`), and after every chunk is on the disk a small
``<out>.progress.json`` sidecar records how many rows are done and which bundle and input they came
from. Run again after an interruption and the work continues from the last recorded chunk (if
bundle, input and settings are unchanged; otherwise it starts over). Only a complete result is
renamed to ``<out>``; the sidecar is then removed. An existing ``<out>`` is replaced only when the
caller allows it, and only when it is a ``.npy`` file (an earlier output), never another file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from embridge.core.bundle.archive import BundleLimits
from embridge.core.bundle.fingerprint import layer_fingerprint
from embridge.core.bundle.matrix_out import MatrixFile
from embridge.core.bundle.runtime import LoadedBundle, load_bundle
from embridge.core.errors import BundleError, InputError, UsageError, VectorFileError
from embridge.core.formatting import counted
from embridge.core.l2 import zero_rows
from embridge.core.paths import check_folder_target, check_output, check_regular
from embridge.core.progress import ProgressFn, StopFn, check_stop, no_progress
from embridge.core.store.file_lock import exclusive_lock
from embridge.core.store.files import atomic_write_text, publish, sha256_file
from embridge.core.store.vector_matrix import as_storage_dtype, check_finite, disk_error

DEFAULT_CHUNK = 65_536
NPY_MAGIC = b"\x93NUMPY"


def partial_paths(out: Path) -> tuple[Path, Path]:
    """(partial matrix, progress sidecar) used while ``out`` is being written."""
    return out.with_name(out.name + ".partial"), out.with_name(out.name + ".progress.json")


def _open_input(path: Path, label: str, dim: int, rows: int | None = None) -> np.ndarray:
    if not path.exists():
        raise VectorFileError(path, f"{label} file does not exist")
    check_regular(path, f"{label} file", folders=False)
    _check_signature(path, label)
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise VectorFileError(path, f"not a readable .npy matrix ({exc})") from exc
    if not isinstance(arr, np.ndarray):  # an .npz archive opens as a mapping of arrays
        if hasattr(arr, "close"):
            arr.close()
        raise VectorFileError(path, f"{label} must be one .npy matrix, not an .npz archive or other container")
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise VectorFileError(path, f"{label} have shape {arr.shape}; the bundle's adapter expects (n, {dim})")
    if rows is not None and arr.shape[0] != rows:
        raise VectorFileError(path, f"{label} have {arr.shape[0]} rows, the main input has {rows}")
    if arr.dtype.kind not in "fiu":  # the dtypes a vectors import takes: integers are read as float32
        raise VectorFileError(path, f"{label} must be floats or integers, got {arr.dtype}")
    return arr


def _check_signature(path: Path, label: str) -> None:
    """Name what the file is when it is no ``.npy``: numpy itself would call any other bytes pickled data."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(NPY_MAGIC))
    except OSError as exc:
        raise VectorFileError(path, f"{label} file cannot be read ({exc.strerror})") from exc
    if head == NPY_MAGIC:
        return
    if head.startswith(b"PK"):
        raise VectorFileError(path, f"{label} must be one .npy matrix, not an .npz archive or other container")
    what = "it is empty" if not head else "it does not begin with the .npy signature"
    raise VectorFileError(path, f"{label} file is not a .npy matrix ({what}); save it with numpy.save")


def _identity(path: Path) -> dict[str, Any]:
    """Where the input is and what it holds: a resume needs the very same bytes, not just size and time."""
    st = path.stat()
    return {"path": str(path.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns,
            "sha256": sha256_file(path)}


def apply_bundle(bundle: str | Path | LoadedBundle, vectors: str | Path, out: str | Path, *,
                 old_vectors: str | Path | None = None, normalise_output: bool = False,
                 chunk_rows: int = DEFAULT_CHUNK, limits: BundleLimits | None = None, runtime: str = "auto",
                 overwrite: bool = False, on_progress: ProgressFn | None = None,
                 should_stop: StopFn | None = None) -> dict[str, Any]:
    """Write ``bundle(vectors)`` to ``out`` (.npy float32) in chunks; see the module docstring.

    ``runtime``: ``auto`` (the bundle's torch-free runtime when it has one, else torch), ``numpy``,
    ``onnx`` or ``torch``; see :mod:`embridge.core.bundle.portable`. Nothing here imports torch unless the
    torch runtime is used. ``overwrite``: replace an existing ``.npy`` at ``out`` (never another file).
    ``normalise_output``: L2-normalise each output row, as the manifest's ``normalisation.output``
    says a search takes them (``bundle apply``'s default); False writes the layer's raw outputs, which
    the probes hold.
    """
    written_as = str(out)
    src, out = Path(vectors), Path(out)
    bundle_path = bundle.path if isinstance(bundle, LoadedBundle) else Path(bundle)
    # no file name to derive the partial and lock files' from; a trailing separator asks for a folder
    if out.name in ("", ".", "..") or written_as.endswith(("/", os.sep)):
        raise InputError(f"--out {written_as}", "names a folder, not a file; give the .npy file to write")
    partial, sidecar = partial_paths(out)
    lock_path = out.with_name(out.name + ".lock")
    for target in (out, partial, sidecar, lock_path):
        check_output(target, inputs=(bundle_path, src, old_vectors))
    check_output_file(out)
    check_replaceable(out, overwrite)
    loaded = bundle if isinstance(bundle, LoadedBundle) else load_bundle(bundle, limits, runtime=runtime)
    if old_vectors is not None and not loaded.needs_old:
        raise InputError("--old-vectors", f"{loaded.path} is not a fusion bundle; only a fusion bundle takes "
                         "the old model's query vectors")
    x = _open_input(src, "vectors", loaded.in_dim)
    try:
        with _exclusive(lock_path, out):
            return _apply(loaded, src, x, out, old_vectors, normalise_output, chunk_rows, overwrite,
                          on_progress, should_stop)
    except OSError as exc:  # a full disk (ENOSPC, or EFBIG over a file-size limit): one line naming --out
        raise disk_error(exc, out, "write the output", option="--out") from exc


def check_replaceable(out: Path, overwrite: bool) -> None:
    """``out`` is new, or (with ``overwrite``) an existing ``.npy`` file: never a folder, link, other file; and
    named ``.npy`` (an ``.npz`` name on a plain matrix would be read as neither)."""
    if out.suffix.lower() in (".npz", ".zip"):
        raise UsageError(f"--out {out}", "the output is one .npy matrix; name it .npy")
    if out.is_dir() or out.is_symlink():
        raise BundleError(f"{out}: is {'a symbolic link' if out.is_symlink() else 'a folder'}; --out must be "
                          "a new or existing .npy file")
    if out.exists() and not out.is_file():
        raise BundleError(f"{out}: is not a regular file; --out must be a new or existing .npy file")
    if not out.exists():
        return
    if not overwrite:
        raise InputError(f"--out {out}", "already exists; choose another name, or pass --overwrite to replace it")
    try:
        with open(out, "rb") as fh:
            magic = fh.read(len(NPY_MAGIC))
    except OSError as exc:
        raise InputError(f"--out {out}", f"cannot be read to check what it holds ({exc.strerror})") from exc
    if magic != NPY_MAGIC:
        raise InputError(f"--out {out}", "is not a .npy file; --overwrite replaces only an earlier output "
                         "(a .npy matrix), never another file")


def _apply(loaded: LoadedBundle, src: Path, x: np.ndarray, out: Path, old_vectors: str | Path | None,
           normalise_output: bool, chunk_rows: int, overwrite: bool, on_progress: ProgressFn | None,
           should_stop: StopFn | None) -> dict[str, Any]:
    report = on_progress or no_progress
    old = None
    if loaded.needs_old:
        if old_vectors is None:
            raise BundleError(f"{loaded.path}: this fusion bundle also needs the old model's query vectors "
                              "(--old-vectors)")
        old = _open_input(Path(old_vectors), "old vectors", loaded.out_dim, rows=x.shape[0])
    n = int(x.shape[0])
    partial, sidecar = partial_paths(out)
    state = {"bundle": layer_fingerprint(loaded),  # the layer: a re-export of it resumes (bundle.fingerprint)
             "input": _identity(src), "old_input": _identity(Path(old_vectors)) if old_vectors else None,
             "rows": n, "dim": loaded.out_dim, "normalise_output": normalise_output, "chunk_rows": int(chunk_rows),
             "runtime": loaded.runtime}
    done, matrix = _resume(partial, sidecar, state)
    resumed_from = done
    if matrix is None:
        try:  # the progress file first: a partial output is then never without it, even after a kill here
            atomic_write_text(sidecar, json.dumps({**state, "done": 0}))
            matrix = MatrixFile.create(partial, n, loaded.out_dim)  # space reserved: a full disk fails here
        except BaseException:  # no row done yet (a full disk at the start): leave nothing behind
            if matrix is not None:
                matrix.close()
            _discard(partial, sidecar)
            raise
    zero_old = 0
    try:
        if done:  # where a resumed run starts; a fresh one reports its first chunk, so a refused row is one line
            report(done, n, {"stage": "applying the bundle"})
        while done < n:
            check_stop(should_stop)
            end = min(done + int(chunk_rows), n)
            block = _float32_rows(x[done:end], loaded.normalise_inputs, src, done)
            if loaded.normalise_inputs:
                _refuse_zero_rows(block, src, done)
            old_block = None if old is None else _float32_rows(old[done:end], loaded.normalise_inputs,
                                                               Path(str(old_vectors)), done)
            if old_block is not None:  # a zero old query adds nothing to the fusion, as the report scored it
                zero_old += len(zero_rows(old_block))
            matrix.write(done, loaded(block, old_block, normalise_output))
            matrix.flush()
            done = end
            atomic_write_text(sidecar, json.dumps({**state, "done": done}))
            report(done, n, {"stage": "applying the bundle"})
    except VectorFileError:  # a bad input row: fixing the input changes its identity, so nothing can resume
        matrix.close()
        _discard(partial, sidecar)
        raise
    finally:
        matrix.close()
    if not overwrite and out.exists():  # appeared while this ran: the finished rows stay, to resume onto
        raise InputError(f"--out {out}", "already exists (it appeared while the output was written); choose "
                         "another name, or pass --overwrite to replace it")
    publish(partial, out)
    sidecar.unlink(missing_ok=True)
    return {"path": str(out.resolve()), "rows": n, "dim": loaded.out_dim, "resumed_from": resumed_from,
            "normalised": normalise_output, "bundle": str(loaded.path), "runtime": loaded.runtime,
            "note": "; ".join(filter(None, (cascade_note(loaded.manifest), _zero_old_note(zero_old)))) or None}


def _zero_old_note(count: int) -> str | None:
    """What a fusion made of old queries that are all zeros (an old model that found nothing in the input)."""
    if not count:
        return None
    return (f"{counted(count, 'old query vector')} {'is' if count == 1 else 'are'} all zeros, so the old query adds "
            "nothing there: the fused query is the mapped new query alone, as the report scored such queries")


def cascade_note(manifest: dict[str, Any]) -> str | None:
    """What a cascade bundle's applied vectors are not: the measured system re-ranks the old index's top K
    with new vectors, and these are its fallback layer's alone, which can rank worse than today's search."""
    adapter = manifest.get("adapter") if isinstance(manifest.get("adapter"), dict) else {}
    method = adapter.get("method") if isinstance(adapter.get("method"), dict) else {}
    if method.get("kind") != "cascade":
        return None
    return ("these are the cascade's fallback layer's vectors alone, not the measured system (serving: "
            f"{method.get('serving') or 'the old index recalls, the new model re-ranks'}); searched over the "
            "whole old index on their own they can rank worse than today's search")


def _float32_rows(rows: Any, normalised: bool, src: Path, first_row: int) -> np.ndarray:
    """Rows as float32. For a layer on L2-normalised inputs only a row's direction counts, so wider rows
    are first divided by their largest magnitude: a float64 row of tiny values (1e-300) is not cast to
    zeros, nor one of huge values (1e300) to infinities."""
    block = np.asarray(rows)
    if normalised and block.dtype.kind == "f" and block.dtype.itemsize > 4 and block.size:
        check_finite(block, str(src), first_row)
        scale = np.abs(block).max(axis=1, keepdims=True)
        block = block / np.where(scale > 0, scale, 1)
    return as_storage_dtype(block, "float32", str(src), first_row)


def _refuse_zero_rows(block: np.ndarray, src: Path, first_row: int) -> None:
    """An all-zero row has no direction for a layer on L2-normalised inputs: its output would be the
    layer's bias alone (a migration refuses such points too)."""
    zero = zero_rows(block)
    if len(zero):
        raise VectorFileError(src, f"row {first_row + int(zero[0])} is all zeros ({counted(len(zero), 'such row')} "
                              "in this chunk): the layer takes L2-normalised vectors and a zero vector has no "
                              "direction")


def _resume(partial: Path, sidecar: Path, state: dict[str, Any]) -> tuple[int, MatrixFile | None]:
    """Rows already done and the open partial matrix, when a matching earlier run left them.

    Only files an earlier apply provably left (a progress file of ours beside them) are replaced;
    anything else under those names is the user's and stops the apply.
    """
    for path in (partial, sidecar):
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise BundleError(f"{path}: is a link or a folder; 'bundle apply' writes its progress under this name, "
                              "so move it away or choose another --out")
    if not sidecar.exists():
        if partial.exists():
            raise BundleError(f"{partial}: exists without {sidecar.name}, the progress file 'bundle apply' writes "
                              "before it, so it is not an apply's to resume or replace; move it away or choose "
                              "another --out")
        return 0, None
    try:
        saved = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        saved = None
    if not (isinstance(saved, dict) and {"bundle", "input", "rows", "done"} <= saved.keys()):
        raise BundleError(f"{sidecar}: exists but is not the progress file of a 'bundle apply'; move it away or "
                          "choose another --out")
    if not partial.exists():
        _discard(partial, sidecar)
        return 0, None
    try:
        done = int(saved.get("done", -1))
        if {k: saved.get(k) for k in state} != state or not 0 <= done <= state["rows"]:
            raise ValueError("a different bundle, input or setting")
        matrix = MatrixFile.reopen(partial, state["rows"], state["dim"])
    except (OSError, ValueError, TypeError):
        _discard(partial, sidecar)
        return 0, None
    return done, matrix


def check_output_file(out: Path, option: str = "--out") -> None:
    """``out`` names a file to write in a folder that exists or can be made: not an existing folder and
    not under a regular file; refused in one line before anything is read."""
    if out.is_dir():
        raise InputError(f"{option} {out}", "is a folder; give the .npy file to write")
    check_folder_target(out, option, within=True)


@contextmanager
def _exclusive(lock_path: Path, out: Path) -> Iterator[None]:
    """Hold ``<out>.lock`` for the whole apply, so two applies never write one output at once."""
    def busy() -> Exception:
        return BundleError(f"{out}: another 'bundle apply' is writing this output; wait for it to finish "
                           "or choose another --out")

    with exclusive_lock(lock_path, busy):
        yield


def _discard(partial: Path, sidecar: Path) -> None:
    for path in (partial, sidecar):
        if path.exists():
            os.unlink(path)
