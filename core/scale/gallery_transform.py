"""Transform a partitioned dataset's vectors with a bundle's layer, locally or on Ray Data.

The input is a partitioned dataset (:mod:`embridge.core.scale.partitions`): a folder of Parquet files or a
Lance dataset's fragments. One partition is one unit of work: it is read, its vector column is mapped
through the layer in batches (numpy or onnxruntime, see :mod:`embridge.core.scale.layer`), and it is written as
one Parquet file named after the partition in the output folder (temporary name, then rename), with
every other column unchanged; or, for a Lance output, as fragments of the output dataset that are
committed together once every partition is done (:mod:`embridge.core.scale.lance_output`). A partition whose output already exists is finished, so a rerun after a
crash, a cancel or a killed worker does only the rest. Both engines run the same
:func:`transform_partition`, so their outputs are identical byte for byte; the Ray engine
(:mod:`embridge.core.scale.ray_transform`) runs it in a Ray Data ``map_batches`` over the unfinished partitions.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embridge.core.connectors.arrow_common import id_kind, non_numeric_values
from embridge.core.connectors.connector import SPACE_FIELD
from embridge.core.connectors.parquet import plain_vectors
from embridge.core.connectors.targets import check_database_folder
from embridge.core.errors import InputError
from embridge.core.l2 import zero_rows
from embridge.core.paths import check_folder_target, check_output
from embridge.core.progress import ProgressFn, StopFn, check_stop, no_progress
from embridge.core.scale.engine import check_engine
from embridge.core.scale.item_checks import missing_columns
from embridge.core.scale.layer import loaded_layer
from embridge.core.scale.output_folder import MARKS_KEY, partition_stamps, prepare_target, take_back
from embridge.core.scale.partitions import (
    Partition,
    SourceDataset,
    column_choice,
    dataset_params,
    lance_path,
    open_source,
    parquet_files,
    parquet_folder,
    read_partition,
)
from embridge.core.scale.partitions import read_schema as partition_schema
from embridge.core.scale.transform_spaces import (
    check_input_spaces,
    layer_spaces,
    output_marker,
    with_output_marker,
)


@dataclass(frozen=True)
class PartitionResult:
    name: str
    rows: int
    seconds: float
    skipped: bool = False
    runtime: str = ""  # the bundle runtime that ran the layer (numpy, onnx or torch)
    torch_loaded: bool = False  # whether the process that ran it had imported torch


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
    runtimes: list[str] = field(default_factory=list)  # bundle runtimes that ran the partitions written
    torch_loaded: bool = False  # whether any process that wrote a partition had imported torch
    output: str = "parquet"  # parquet (a folder of files) or lance (a dataset)
    dataset_version: int | None = None  # the Lance version the output was committed as
    replaced: list[str] = field(default_factory=list)  # partitions redone: their source file changed or went away
    note: str | None = None  # some input rows are vectors an earlier bundle made (their embridge_space says so)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rows_per_s": self.rows_per_s}


def parquet_dir(uri: str, option: str) -> Path:
    """The folder of a ``parquet:///dir`` URI (or a plain path)."""
    return parquet_folder(uri, option)


def list_partitions(folder: Path) -> list[Path]:
    """The ``.parquet`` files of a dataset folder, in name order."""
    return parquet_files(folder)


def finished_rows(target: str, output: str = "parquet") -> int:
    """The rows a finished partition's output holds (read from its footer or its marker, not its data)."""
    if output == "lance":
        from embridge.core.scale import lance_output

        return lance_output.finished_rows(Path(target))
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(target).metadata.num_rows)


def transform_partition(bundle: str, part: Partition | dict[str, Any], target: str, id_col: str = "id",
                        vec_col: str = "vector", batch: int = 65_536, output: str = "parquet",
                        marker: str | None = None) -> PartitionResult:
    """Map one partition's vector column through the layer and write it, every row's ``embridge_space`` saying
    ``marker`` (:mod:`embridge.core.scale.transform_spaces`) when one is given.

    ``output`` ``parquet``: ``target`` is the partition's output file (temporary name, then rename);
    ``lance``: ``target`` is its marker in the output Lance dataset (:mod:`embridge.core.scale.lance_output`).
    Either way, ``target`` existing means the partition is finished.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from embridge.core.connectors.arrow_common import float32_rows, vector_array

    part = part if isinstance(part, Partition) else Partition.from_row(part)
    began = time.perf_counter()
    if os.path.exists(target):
        return PartitionResult(part.name, 0, 0.0, skipped=True)
    layer = loaded_layer(bundle)
    table = read_partition(part)
    if vec_col not in table.column_names or id_col not in table.column_names:
        raise InputError(part.path, f"{missing_columns([id_col, vec_col], table.column_names)} (columns: {', '.join(table.column_names)})")
    vec = table.column(vec_col).combine_chunks()
    width = vec.type.list_size if hasattr(vec.type, "list_size") else None
    if width is None:
        raise InputError(part.path, f"column '{vec_col}' is not a fixed-size list of floats")
    if width != layer.in_dim:  # the data's width, not the bundle's: name the file
        raise InputError(part.path, f"column '{vec_col}' holds {width}-d vectors, the bundle {Path(bundle).name} "
                         f"maps {layer.in_dim}-d ones")
    if vec.null_count:
        row = vec.is_null().to_pylist().index(True)
        raise InputError(part.where, f"row {row} of column '{vec_col}' (id {table.column(id_col)[row].as_py()!r}) is a "
                         f"null vector ({vec.null_count} such rows)")
    values = vec.flatten()
    if values.null_count:  # a null inside a vector: to_numpy would make it NaN, and it would be named so
        row = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0]) // width
        raise InputError(part.where, f"row {row} of column '{vec_col}' (id {table.column(id_col)[row].as_py()!r}) "
                         "holds a null value inside its vector")
    # a float64 value beyond float32's range is named as such, not left to become inf ("NaN or inf")
    old = float32_rows(vec.flatten().to_numpy(zero_copy_only=False), len(vec), width,
                       f"{part.path}: column '{vec_col}'", table.column(id_col).to_pylist(), 0)
    bad = np.flatnonzero(~np.isfinite(old).all(axis=1))
    if len(bad):
        raise InputError(part.where, f"row {int(bad[0])} of column '{vec_col}' (id "
                         f"{table.column(id_col)[int(bad[0])].as_py()!r}) holds NaN or inf values ({len(bad)} such rows)")
    zero = zero_rows(old)
    if len(zero):  # as a migration refuses such points: no direction, the output would be the layer's bias
        raise InputError(part.where, f"row {int(zero[0])} of column '{vec_col}' (id "
                         f"{table.column(id_col)[int(zero[0])].as_py()!r}) is an all-zero vector ({len(zero)} such "
                         "rows): it has no direction to transform")
    # rows L2-normalised, as the manifest's normalisation.output says and a store migration writes them
    parts = [layer(old[s:s + batch], normalise_output=True) for s in range(0, len(old), batch)] \
        or [np.zeros((0, layer.out_dim), np.float32)]
    new = np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)
    out = table.set_column(table.column_names.index(vec_col), pa.field(vec_col, vector_array(new).type),
                           vector_array(new))
    if marker is not None:
        out = with_output_marker(out, marker)
    if output == "lance":
        from embridge.core.scale.lance_output import write_partition

        write_partition(out, Path(target))
    else:
        tmp = str(Path(target).parent / f".{Path(target).name}.tmp-{os.getpid()}")
        pq.write_table(out, tmp, **plain_vectors(out.column_names, vec_col))
        os.replace(tmp, target)
    return PartitionResult(part.name, len(old), time.perf_counter() - began, runtime=layer.runtime,
                           torch_loaded=sys.modules.get("torch") is not None)


def _check_schemas(source: SourceDataset, id_col: str, vec_col: str, one_schema: bool = False,
                   layer_in: tuple[str, int] | None = None) -> None:
    """Every partition has the id column and a fixed-size-list vector column (schemas only, no rows) of the
    width the layer (``layer_in``: the bundle's name and input width) maps, before any worker starts;
    ``one_schema`` (a Lance output, one schema for every fragment): the same columns, in the same order,
    of the same types, but for the vector column's float type, which the layer's output replaces."""
    import pyarrow as pa

    first: tuple[str, int, Any] | None = None
    carried: list[tuple[str, Any]] | None = None
    for part in source.partitions if source.kind == "parquet" else source.partitions[:1]:
        schema = partition_schema(part)
        where = part.path if source.kind == "parquet" else source.root
        if id_col not in schema.names or vec_col not in schema.names:
            raise InputError(where, f"{missing_columns([id_col, vec_col], schema.names)} (columns: {', '.join(schema.names)}); "
                             "name them with --id-column/--vector-column")
        vec_type, id_type = schema.field(vec_col).type, schema.field(id_col).type
        if not pa.types.is_fixed_size_list(vec_type):
            raise InputError(where, f"column '{vec_col}' is not a fixed-size list of floats")
        if (value_type := non_numeric_values(vec_type)) is not None:
            raise InputError(where, f"column '{vec_col}' is a fixed-size list of {value_type}, not of floats; "
                             "cast it to floats")
        if id_kind(id_type) not in ("integer", "text"):  # as a migration refuses them
            raise InputError(where, f"column '{id_col}' is {id_type}; ids must be integers or text (cast the "
                             "column, or name another with --id-column)")
        if first is None and layer_in is not None and vec_type.list_size != layer_in[1]:
            raise InputError(where, f"column '{vec_col}' holds {vec_type.list_size}-d vectors, the bundle "
                             f"{layer_in[0]} maps {layer_in[1]}-d ones")
        if first is None:
            first = (Path(part.path).name, vec_type.list_size, id_type)
        elif vec_type.list_size != first[1]:
            raise InputError(where, f"column '{vec_col}' holds {vec_type.list_size}-d vectors but {first[0]} "
                             f"holds {first[1]}-d ones; every partition needs the same width")
        elif id_kind(id_type) != id_kind(first[2]):
            raise InputError(where, f"column '{id_col}' is {id_type} but {first[0]} has {first[2]}; "
                             "every partition needs the same id type")
        if one_schema:
            columns = [(f.name, None if f.name == vec_col else f.type) for f in schema]
            if carried is None:
                carried = columns
            elif columns != carried:
                raise InputError(where, _schema_difference(columns, carried, first[0]))


def _schema_difference(columns: list[tuple[str, Any]], first: list[tuple[str, Any]], first_name: str) -> str:
    """What sets a partition's columns apart from the first one's, for a Lance output's single schema."""
    names, first_names = [n for n, _ in columns], [n for n, _ in first]
    if set(names) != set(first_names):
        extra, missing = sorted(set(names) - set(first_names)), sorted(set(first_names) - set(names))
        what = "; ".join(part for part in (f"it has {', '.join(extra)}" if extra else "",
                                           f"it lacks {', '.join(missing)}" if missing else "") if part)
        why = f"its columns differ from {first_name}'s ({what})"
    elif names != first_names:
        why = f"its columns are in another order than {first_name}'s ({', '.join(names)} against {', '.join(first_names)})"
    else:
        name, kind = next((n, t) for (n, t), (_, t0) in zip(columns, first, strict=True) if t != t0)
        why = f"column '{name}' is {kind} but {first_name} has {dict(first)[name]}"
    return f"{why}; a Lance output holds one schema, so every partition needs the same columns and types"


def _check_ids(src: Any, id_col: str) -> None:
    """Refuse null ids and an id held twice (in one partition or two): the output is upserted by id."""
    from embridge.core.scale.item_checks import check_unique, first_null, id_array

    names, columns = [], []
    for part in src.partitions:
        ids = read_partition(part, [id_col]).column(id_col)
        named = part.where
        if ids.null_count:
            raise InputError(named, f"row {first_null(ids)} of column '{id_col}' is a null id "
                             f"({ids.null_count} such rows)")
        names.append(named)
        columns.append(ids)
    if columns:
        rows = [len(c) for c in columns]
        check_unique(id_array([v for c in columns for v in c.to_pylist()], names, rows), names, rows)


def _check_paths(src: Path, dst: Path, bundle: Path) -> None:
    s, d = src.resolve(), dst.resolve()
    if d == s or s in d.parents or d in s.parents:
        raise InputError("--to", f"{dst}: the output folder must not be the input folder, inside it or around it")
    if not bundle.exists():
        raise InputError("--bundle", f"{bundle}: no such bundle")


def transform_gallery(bundle: str | Path, source: str, target: str, *, engine: str = "local",
                      ray_address: str | None = None, num_cpus: int | None = None, id_col: str | None = None,
                      vec_col: str | None = None, on_progress: ProgressFn | None = None,
                      should_stop: StopFn | None = None) -> TransformResult:
    """Transform every partition of ``source`` into ``target`` on ``engine``; resumes finished partitions.

    ``target`` is a Parquet folder (one file per partition) or a Lance dataset (``lance:///x.lance`` or
    ``lancedb:///db?table=NAME``: fragments per partition, committed as one version at the end). The
    columns are ``id_col`` and ``vec_col``, else those ``?id=`` and ``?vector=`` on ``source`` name, else
    ``id`` and ``vector``.
    """
    from embridge.core.scale import lance_output

    check_engine(engine)
    params = dataset_params(source, "--from", ("id", "vector"))
    dataset_params(target, "--to")
    id_col = column_choice("--id-column", id_col, "id", params, "id")
    vec_col = column_choice("--vector-column", vec_col, "vector", params, "vector")
    on_progress = on_progress or no_progress
    output = "lance" if lance_output.is_lance_uri(target) else "parquet"
    dst = lance_path(target, "--to") if output == "lance" else parquet_dir(target, "--to")
    src, bundle_path = open_source(source, "--from"), Path(bundle)
    _check_paths(src.root, dst, bundle_path)
    check_output(dst, label="--to", inputs=(src.root, bundle_path), below=True)
    check_database_folder(target, "--to")  # a LanceDB database folder holding a workspace, as migrate refuses it
    check_folder_target(dst, "--to")
    layer = loaded_layer(bundle_path)  # verify the bundle here, with one clear line, before any worker starts
    spaces = layer_spaces(bundle_path)  # rows already mapped, or another model's, named before their widths
    note = check_input_spaces(src.partitions, spaces, str(src.root))
    _check_schemas(src, id_col, vec_col, one_schema=output == "lance", layer_in=(bundle_path.name, layer.in_dim))
    _check_ids(src, id_col)
    marker = output_marker(spaces)
    state = {"layer_sha256": spaces.adapter_sha256, "source": str(src.root.resolve()),
             "inputs": partition_stamps(src), "id": id_col, "vector": vec_col,
             MARKS_KEY: SPACE_FIELD}  # outputs of a version that wrote no embridge_space are another job's
    if src.kind != "parquet":
        state["source_version"] = src.version
    if output == "lance":
        state["output"] = "lance"
    def output_of(name: str) -> Path:  # a partition's output; existing means finished
        return lance_output.marker_path(dst, name) if output == "lance" else dst / name

    fresh, made, replaced = prepare_target(dst, state, output_of)
    names = [p.name for p in src.partitions]
    if output == "lance":
        lance_output.prepare(dst)
    targets = [str(output_of(name)) for name in names]
    jobs = [(str(bundle_path.resolve()), p, t, id_col, vec_col, marker)
            for p, t in zip(src.partitions, targets, strict=True)]
    began = time.perf_counter()
    try:
        if engine == "local":
            results = []
            for i, job in enumerate(jobs):
                check_stop(should_stop)
                results.append(transform_partition(*job[:5], output=output, marker=job[5]))
                on_progress(i + 1, len(jobs), {"stage": "transform"})
        else:
            from embridge.core.scale.ray_transform import transform_on_ray

            results = transform_on_ray(jobs, ray_address, num_cpus, on_progress, should_stop, output)
    except BaseException:
        if fresh and not any(os.path.exists(t) for t in targets):
            take_back(dst, made)  # refused or stopped before any output: nothing of this run is left
        raise
    version = None
    if output == "lance":
        check_stop(should_stop)
        version = lance_output.committed_version(dst, names)
        if version is None or any(not r.skipped for r in results):
            version = lance_output.commit(dst, names)
    written = [r for r in results if not r.skipped]
    return TransformResult(engine, str(src.root), str(dst), len(jobs), len(written), len(results) - len(written),
                           sum(r.rows for r in written), time.perf_counter() - began,
                           sorted({r.runtime for r in written if r.runtime}), any(r.torch_loaded for r in written),
                           output, version, replaced, note)
