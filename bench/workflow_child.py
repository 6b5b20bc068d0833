"""One step of the workflow benchmark, or its floor, in a process of its own (for its peak memory).

``python -m bench.workflow_child step -- <embridge arguments>`` runs the command line in-process and
times it; ``python -m bench.workflow_child floor KIND ...`` runs the raw operation the step is
compared with. Either prints one JSON line: ``seconds`` and ``vm_hwm_bytes`` (peak resident memory).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import sys
import time
import zipfile
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np

from bench.common import emit

# what the commands import on first use: loaded before the clock starts, so a step times its work
# (at toy sizes the imports would be most of it); ``import_s`` records what they took. Every module
# of the engine is loaded except the store connectors and the Ray scale-out, which no step uses
WARM_IMPORTS = ("torch", "faiss")
NOT_WARMED = ("connectors", "scale")


def _warm_imports() -> None:
    import importlib
    import pkgutil

    import embridge.core

    for name in WARM_IMPORTS:
        importlib.import_module(name)
    for info in pkgutil.walk_packages(embridge.core.__path__, "embridge.core."):
        if info.name.split(".")[2] not in NOT_WARMED:
            importlib.import_module(info.name)
    from embridge.core.store.sqlite_import import sqlite_utils

    sqlite_utils()  # the workspace's SQLite layer, which the engine loads on first opening one


def _step(argv: list[str]) -> None:
    started = time.perf_counter()
    _warm_imports()
    import_s = time.perf_counter() - started
    from embridge.core.cli.main import main

    start = time.perf_counter()
    with redirect_stdout(io.StringIO()) as out:
        code = main(argv)
    seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"embridge {' '.join(argv)} exited {code}: {out.getvalue()[-500:]}")
    emit({"seconds": seconds, "import_s": import_s})


def _read_write(src: Path, dst: Path) -> float:
    """Read an .npz's arrays whole, write their bytes to ``dst`` (synced) and sha256 them."""
    start = time.perf_counter()
    with np.load(src) as data:
        arrays = [data[name] for name in data.files]
    digest = hashlib.sha256()
    with open(dst, "wb") as fh:
        for array in arrays:
            view = np.ascontiguousarray(array).data
            digest.update(view)
            fh.write(view)
        fh.flush()
        os.fsync(fh.fileno())
    digest.hexdigest()
    return time.perf_counter() - start


def _workspace_schema(db_path: Path) -> sqlite3.Connection:
    """A fresh database with the workspace's tables and indexes, made by the schema's own migrations."""
    import sqlite_utils

    from embridge.core.store.schema import MIGRATIONS, SCHEMA_VERSION

    db = sqlite_utils.Database(db_path)
    for version in range(SCHEMA_VERSION):
        MIGRATIONS[version](db)
    db.close()
    conn = sqlite3.connect(db_path)
    conn.execute("pragma journal_mode=wal")
    return conn


def _import_floor(src: Path, dst: Path, db_path: Path) -> float:
    """The import's floor: read + sha256 + synced write of the file's bytes, and its keys inserted into a
    fresh SQLite database with the workspace's schema (same tables and indexes, WAL, one transaction)."""
    with np.load(src) as data:
        keys = data["ids"].tolist()
    conn = _workspace_schema(db_path)
    start = time.perf_counter()
    seconds = _read_write(src, dst)
    rows = [(k, "gallery", str(src), "vector", "{}", "2026-01-01T00:00:00+00:00") for k in keys]
    conn.execute("begin immediate")
    conn.executemany("insert into items (key, split, source, modality, metadata, created) values (?, ?, ?, ?, ?, ?)",
                     rows)
    conn.commit()
    conn.close()
    del seconds
    return time.perf_counter() - start


def _attach_floor(src: Path, dst: Path, db_path: Path) -> float:
    """The attach's floor: read + sha256 + synced write of the file's bytes, and its keys looked up in the
    workspace's item table (its unique key index, 500 keys a query)."""
    with np.load(src) as data:
        keys = data["ids"].tolist()
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    start = time.perf_counter()
    _read_write(src, dst)
    found = 0
    for at in range(0, len(keys), 500):
        part = keys[at:at + 500]
        found += len(conn.execute(f"select id from items where namespace = 'doc' and key in "
                                  f"({','.join('?' * len(part))})", part).fetchall())
    conn.close()
    if found != len(keys):
        raise SystemExit(f"attach floor: {found} of {len(keys)} keys found")
    return time.perf_counter() - start


def _bundle_floor(bundle: Path, gallery: Path, dst: Path) -> float:
    """The export's floor: the raw calls that make the bundle's files, with nothing around them.

    The bundle's own adapter (its TorchScript, loaded from the exported bundle) is serialised with
    ``torch.jit.save``; for a non-linear layer it is exported with ``torch.onnx.export`` and run once
    on the probes with onnxruntime (the export-time check every bundle with an ONNX file gets); the
    torch-free tensors are written with safetensors; when the bundle carries a transformed gallery,
    the adapter is run over the stored gallery matrix in 16k-row chunks; then as many bytes as the
    bundle's members hold are written to a stored zip (synced) and sha256ed."""
    import torch
    from safetensors.numpy import load as st_load
    from safetensors.numpy import save as st_save

    with zipfile.ZipFile(bundle) as zf:
        members = [(info.filename, zf.read(info.filename)) for info in zf.infolist()]
    files = dict(members)
    manifest = json.loads(files["manifest.json"])
    module = torch.jit.load(io.BytesIO(files[manifest["adapter"]["file"]]))
    probes = np.load(io.BytesIO(files[manifest["probes"]["inputs"]]))
    tensors = st_load(files[manifest["portable"]["file"]])
    onnx = manifest["portable"].get("runtime") == "onnx"
    matrix = np.load(gallery, mmap_mode="r")
    start = time.perf_counter()
    torch.jit.save(module, io.BytesIO())
    if onnx:
        import onnxruntime

        buf = io.BytesIO()
        torch.onnx.export(module, (torch.from_numpy(probes),), buf, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, opset_version=17, dynamo=False)
        session = onnxruntime.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
        session.run(None, {"x": probes})
    st_save(tensors)
    if manifest.get("gallery_transformed"):  # only a bundle that carries the transformed gallery computes it
        with torch.inference_mode():
            for at in range(0, len(matrix), 16_384):
                module(torch.from_numpy(np.array(matrix[at:at + 16_384])))
    digest = hashlib.sha256()
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as out:
        for name, payload in members:
            digest.update(payload)
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
    if kind == "import":
        seconds = _import_floor(Path(args[0]), Path(args[1]), Path(args[2]))
    elif kind == "attach":
        seconds = _attach_floor(Path(args[0]), Path(args[1]), Path(args[2]))
    elif kind == "bundle":
        seconds = _bundle_floor(Path(args[0]), Path(args[1]), Path(args[2]))
    else:
        raise SystemExit(f"unknown floor {kind}")
    emit({"seconds": seconds})


if __name__ == "__main__":
    main(sys.argv[1:])
