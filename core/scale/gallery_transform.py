"""Forward-transform a partitioned Parquet gallery with a bundle's layer, locally or on Ray.

One input ``.parquet`` file is one partition and one unit of work: it is read, its vector column
is mapped through the layer in batches, and it is written under the same name in the output folder
(temporary name, then rename), with every other column unchanged. A partition whose output already
exists is finished, so a rerun after a crash or a cancel does only the rest. Both engines run the same
:func:`transform_partition`, so their outputs are identical byte for byte.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import InputError
from core.progress import ProgressFn, StopFn, check_stop, no_progress
from core.scale.engine import check_engine, import_ray, ray_session
from core.scale.layer import bundle_fingerprint, load_layer

STATE_FILE = "_embridge_transform.json"
PARTITION_RETRIES = 3


@dataclass(frozen=True)
class PartitionResult:
    name: str
    rows: int
    seconds: float
    skipped: bool = False


@dataclass(frozen=True)
class TransformResult:
    """What a transform did: partitions written now, partitions already finished, rows, time."""

    engine: str
    source: str
    target: str
    partitions: int
    written: int
    skipped: int
    rows: int
    seconds: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rows_per_s": self.rows_per_s}


def parquet_dir(uri: str, option: str) -> Path:
    """The folder of a ``parquet:///dir`` URI (or a plain path)."""
    if uri.startswith("parquet://"):
        from core.connectors.base import StoreURI

        path = StoreURI.parse(uri).path
    elif "://" in uri:
        raise InputError(option, f"{uri}: the transform reads and writes parquet:///folder datasets")
    else:
        path = uri
    if not path or path == "/":
        raise InputError(option, f"{uri}: name the dataset folder, e.g. parquet:///data/gallery")
    return Path(path.rstrip("/"))


def list_partitions(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise InputError(folder, "no such Parquet dataset folder")
    files = sorted(p for p in folder.iterdir() if p.suffix == ".parquet" and not p.name.startswith("."))
    if not files:
        raise InputError(folder, "holds no .parquet files")
    return files


def transform_partition(bundle: str, source: str, target: str, id_col: str = "id", vec_col: str = "vector",
                        batch: int = 65_536) -> PartitionResult:
    """Map one Parquet file's vector column through the layer and write it (temp name, then rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from core.connectors.arrow_common import vector_array

    began = time.perf_counter()
    if os.path.exists(target):
        return PartitionResult(Path(source).name, 0, 0.0, skipped=True)
    layer = load_layer(bundle)
    table = pq.read_table(source)
    if vec_col not in table.column_names or id_col not in table.column_names:
        raise InputError(source, f"no '{id_col}' and '{vec_col}' columns (columns: {', '.join(table.column_names)})")
    vec = table.column(vec_col).combine_chunks()
    width = vec.type.list_size if hasattr(vec.type, "list_size") else None
    if width is None:
        raise InputError(source, f"column '{vec_col}' is not a fixed-size list of floats")
    old = np.asarray(vec.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(len(vec), width)
    parts = [layer(old[s:s + batch]) for s in range(0, len(old), batch)] or [np.zeros((0, width), np.float32)]
    new = np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)
    out = table.set_column(table.column_names.index(vec_col), pa.field(vec_col, vector_array(new).type),
                           vector_array(new))
    tmp = str(Path(target).parent / f".{Path(target).name}.tmp-{os.getpid()}")
    pq.write_table(out, tmp)
    os.replace(tmp, target)
    return PartitionResult(Path(source).name, len(old), time.perf_counter() - began)


def _check_schemas(files: list[Path], id_col: str, vec_col: str) -> None:
    """Every partition has the id column and a fixed-size-list vector column (read from footers only)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for file in files:
        try:
            schema = pq.read_schema(file)
        except (OSError, pa.ArrowInvalid) as exc:
            raise InputError(file, f"is not a readable Parquet file ({exc})") from exc
        if id_col not in schema.names or vec_col not in schema.names:
            raise InputError(file, f"no '{id_col}' and '{vec_col}' columns (columns: {', '.join(schema.names)}); "
                             "name them with --id-column/--vector-column")
        if not pa.types.is_fixed_size_list(schema.field(vec_col).type):
            raise InputError(file, f"column '{vec_col}' is not a fixed-size list of floats")


def _check_paths(src: Path, dst: Path, bundle: Path) -> None:
    s, d = src.resolve(), dst.resolve()
    if d == s or s in d.parents or d in s.parents:
        raise InputError("--to", f"{dst}: the output folder must not be the input folder, inside it or around it")
    if not bundle.exists():
        raise InputError("--bundle", f"{bundle}: no such bundle")


def _prepare_target(dst: Path, state: dict[str, Any]) -> None:
    """Create the output folder, or check that an existing one belongs to this same transform."""
    marker = dst / STATE_FILE
    if marker.exists():
        before = json.loads(marker.read_text())
        if before != state:
            raise InputError("--to", f"{dst}: holds the output of another transform (other bundle or source); "
                             "choose a new folder")
        for stale in dst.glob(".*.tmp-*"):  # a partition a killed run left half written
            stale.unlink()
        return
    if dst.exists() and any(dst.iterdir()):
        raise InputError("--to", f"{dst}: exists and is not the output of an earlier run of this transform")
    dst.mkdir(parents=True, exist_ok=True)
    for stale in dst.glob(".*.tmp-*"):  # a partition a killed run left half written
        stale.unlink()
    tmp = dst / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, marker)


def transform_gallery(bundle: str | Path, source: str, target: str, *, engine: str = "local",
                      ray_address: str | None = None, num_cpus: int | None = None, id_col: str = "id",
                      vec_col: str = "vector", on_progress: ProgressFn | None = None,
                      should_stop: StopFn | None = None) -> TransformResult:
    """Transform every partition of ``source`` into ``target`` on ``engine``; resumes finished partitions."""
    check_engine(engine)
    on_progress = on_progress or no_progress
    src, dst, bundle_path = parquet_dir(source, "--from"), parquet_dir(target, "--to"), Path(bundle)
    _check_paths(src, dst, bundle_path)
    files = list_partitions(src)
    _check_schemas(files, id_col, vec_col)
    load_layer(bundle_path)  # verify the bundle here, with one clear line, before any worker starts
    state = {"bundle_sha256": bundle_fingerprint(bundle_path), "source": str(src.resolve()),
             "partitions": [p.name for p in files], "id": id_col, "vector": vec_col}
    _prepare_target(dst, state)
    jobs = [(str(bundle_path.resolve()), str(f), str(dst / f.name), id_col, vec_col) for f in files]
    began = time.perf_counter()
    if engine == "local":
        results = []
        for i, job in enumerate(jobs):
            check_stop(should_stop)
            results.append(transform_partition(*job))
            on_progress(i + 1, len(jobs), {"stage": "transform"})
    else:
        results = _on_ray(jobs, ray_address, num_cpus, on_progress, should_stop)
    written = [r for r in results if not r.skipped]
    return TransformResult(engine, str(src), str(dst), len(jobs), len(written), len(results) - len(written),
                           sum(r.rows for r in written), time.perf_counter() - began)


def _on_ray(jobs: list[tuple], address: str | None, num_cpus: int | None, on_progress: ProgressFn,
            should_stop: StopFn | None) -> list[PartitionResult]:
    """One Ray task per partition, retried when its worker dies; results in partition order."""
    ray = import_ray()
    with ray_session(address, num_cpus):
        task = ray.remote(num_cpus=1, max_retries=PARTITION_RETRIES)(transform_partition)
        pending = [task.remote(*job) for job in jobs]
        waiting = list(pending)
        try:
            while waiting:
                check_stop(should_stop)
                _, waiting = ray.wait(waiting, num_returns=1, timeout=0.5)
                on_progress(len(pending) - len(waiting), len(pending), {"stage": "transform"})
        except BaseException:
            for ref in waiting:
                ray.cancel(ref, force=True)
            raise
        return ray.get(pending)
