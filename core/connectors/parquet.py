"""Parquet/Arrow datasets: ``parquet:///path/to/dataset_dir``.

A collection is a folder of ``.parquet`` files (the suffix in any case; other files refused, names
starting with '.' or '_' skipped) with an id column, a fixed-size-list vector column and any payload
columns (``?id=COLUMN&vector=COLUMN`` when they are not called ``id`` and ``vector``).
Siblings of the folder are the store's other collections; an alias is a symbolic link beside them.
Each written batch becomes one file named after a hash of its ids, written under a temporary name
and renamed, so writing the same batch again replaces that file instead of duplicating rows.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from embridge.core.connectors.arrow_common import (
    batch_to_table,
    fit_table,
    list_width,
    reading_parquet,
    release_arrow_memory,
    shadow_schema,
    table_to_batch,
    widen_schema,
)
from embridge.core.connectors.connector import (
    SPACE_FIELD,
    Batch,
    Connector,
    PointId,
    StoreURI,
    VectorStoreError,
    check_write_batch,
    path_uri,
    space_key,
)
from embridge.core.connectors.links import link_target, swap_link
from embridge.core.connectors.parquet_schemas import check_file_schemas
from embridge.core.connectors.source_checks import SourceDataError
from embridge.core.paths import irregular_kind

READ_BUFFER = 1 << 20  # bytes read ahead within a column chunk
ROW_GROUP_ROWS = 16_384  # written row groups: small enough to stream back in bounded memory


def plain_vectors(columns: list[str], vector_column: str) -> dict[str, Any]:
    """Parquet writer options that store the vector column as it is: embedding floats gain nothing from
    snappy or a dictionary (a few bytes in a thousand) but cost a third of the write; ids and payload
    keep both."""
    return {"compression": {name: "none" if name == vector_column else "snappy" for name in columns},
            "use_dictionary": [name for name in columns if name != vector_column]}


def is_parquet_file(path: Path) -> bool:
    """A data file of a dataset folder: a ``.parquet`` suffix in any case (``PART-0.PARQUET`` too)."""
    return path.suffix.lower() == ".parquet" and not path.name.startswith((".", "_")) and not path.is_dir()


NOT_PARQUET = ("not a .parquet file, and only the *.parquet files of a Parquet dataset folder are read; rename "
               "it to end in .parquet if it holds points of the dataset, or move it out of the folder")


def dataset_files(folder: Path) -> tuple[list[Path], tuple[Path, str] | None]:
    """A dataset folder's data files in name order, or the (path, problem) that refuses the folder: the one
    rule of every Parquet reader (store connector, transform, embed-dataset).

    Every ``*.parquet`` (any case) is read, as pyarrow reads them; names starting with '.' or '_'
    (``_SUCCESS``, ``_metadata``, ``.crc`` files, Embridge's own temporary files) are skipped as pyarrow's
    datasets skip them; any other file, or a subfolder holding files (Parquet files of a partitioned
    dataset, or other data), is refused, since reading past it would leave its rows out while counts
    still match.
    """
    if not folder.is_dir():
        return [], (folder, "no such Parquet dataset folder")
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith((".", "_")))
    nested = next((d for d in entries if d.is_dir() and any(is_parquet_file(f) for f in d.rglob("*"))), None)
    if nested is not None:  # read as flat, its partitions (and their partition values) would go missing
        return [], (folder, f"holds Parquet files in a subfolder ({nested.name}/), a partitioned dataset; "
                            "Embridge reads the .parquet files directly in one folder, so write the dataset "
                            "without partitioning (its partition columns as columns)")
    foreign = next((p for p in entries if not is_parquet_file(p) and p.is_file()), None)
    if foreign is not None:
        return [], (foreign, NOT_PARQUET)
    # a subfolder of other data (a Lance table, '.PARQ' files) would be passed over as if the folder held
    # nothing there: an empty dataset, which a migration then copies as empty and switches to
    filled = next((d for d in entries if d.is_dir() and any(f.is_file() for f in d.rglob("*"))), None)
    if filled is not None:
        return [], (filled, "a subfolder holding files that are not .parquet files; only the *.parquet files "
                            "directly in a Parquet dataset folder are read, so move it out of the folder")
    files = [p for p in entries if is_parquet_file(p)]
    for file in files:  # opening a FIFO blocks for good (and holds off Ctrl-C); a device may never end
        kind = irregular_kind(file)  # (is_parquet_file leaves folders out)
        if kind is not None:
            return [], (file, f"is {kind}, not a regular file; a dataset's .parquet entries must be files")
    return files, None


def _rows(file: Path) -> int:
    import pyarrow.parquet as pq

    with reading_parquet(file):
        return int(pq.ParquetFile(file).metadata.num_rows)


def _schema(file: Path) -> Any:
    import pyarrow.parquet as pq

    with reading_parquet(file):
        return pq.read_schema(file)


class ParquetConnector(Connector):
    scheme = "parquet"
    single_client = False
    aliases_may_be_users = True
    one_id_type = True
    even_batches = False  # a read from a cursor starts at a row group, and its batches are cut from there

    def __init__(self, uri: StoreURI) -> None:
        import pyarrow.parquet  # noqa: F401 - fail early when the extra is missing

        if not uri.path or uri.path == "/":
            raise VectorStoreError(f"{uri.shown}: name the dataset folder, e.g. parquet:///data/docs")
        self.folder = Path(uri.path.rstrip("/"))
        super().__init__(uri)
        self.id_col = uri.param("id", default="id") or "id"
        self.vec_col = uri.param("vector", default="vector") or "vector"
        self._columns: Any = None  # the schema every written file shares (see write)
        self._columns_known = False

    @staticmethod
    def collection_name(uri: StoreURI) -> str:
        return Path(uri.path.rstrip("/")).name

    def with_collection(self, name: str) -> ParquetConnector:
        query = self.uri.raw.split("?", 1)[1] if "?" in self.uri.raw else ""
        return ParquetConnector(StoreURI.parse(path_uri("parquet", self.folder.parent / name, query)))

    def location(self) -> str:
        return str(self.folder.parent)

    def describe(self) -> str:
        return f"Parquet dataset {self.folder}"

    def state_dir(self) -> str:
        # the real folder's: a dataset reached through a linked folder (or a link to it) has one checkpoint
        return str(self.folder.resolve().parent)

    def _files(self) -> list[Path]:
        """The dataset's data files, by the rule every Parquet reader shares (:func:`dataset_files`)."""
        files, problem = dataset_files(self.folder)
        if problem is not None:
            raise VectorStoreError(f"{problem[0]}: {problem[1]}")
        return files

    def exists(self) -> bool:
        return self.folder.is_dir()

    def count(self) -> int:
        return sum(_rows(f) for f in self._files())

    def dim(self) -> int | None:
        files = self._files()
        if not files:
            return None
        schema = _schema(files[0])
        field = schema.field(self.vec_col) if self.vec_col in schema.names else None
        if field is None:
            raise VectorStoreError(f"{files[0]}: no vector column '{self.vec_col}' (name it with ?vector=COLUMN)")
        return list_width(field.type, self._batches(files, 1, None))  # the first file's first batch only

    def arrow_schema(self) -> Any:
        """The dataset's columns in one schema (files' types unified, a column missing from a file
        taken from the others), which a migration's shadow keeps; None for a dataset with no files."""
        schema = None
        for file in self._files():
            schema = _schema(file) if schema is None else widen_schema(schema, _schema(file), promote=True)
        return schema

    def read_batches(self, batch_size: int, cursor: Any = None) -> Iterator[Batch]:
        """Cursor: ``[file index, rows of that file done]``.

        Column chunks are read through a small buffer page by page (not a whole row group at once),
        row groups before the cursor are skipped unread, and Arrow's freed buffers go back to the
        system after each batch, so memory stays near one batch whatever the files' row groups.
        Every file's columns are checked against the others' first, once per read (schemas only).
        """
        files = self._files()
        check_file_schemas(files, _schema, self.id_col, self.vec_col)
        yield from self._batches(files, batch_size, cursor)

    def _batches(self, files: list[Path], batch_size: int, cursor: Any) -> Iterator[Batch]:
        import pyarrow.parquet as pq

        start_file, start_row = (cursor or [0, 0])
        width: tuple[int, Path] | None = None  # the dataset's width, and the file that sets it
        if cursor is not None and files and (first := self.dim()):  # a resumed read: the width of the first file
            width = (first, files[0])
        for index in range(int(start_file), len(files)):
            with reading_parquet(files[index]):
                for batch in self._file_batches(pq.ParquetFile(files[index], buffer_size=READ_BUFFER, pre_buffer=False),
                                                index, len(files), batch_size, start_file, start_row, files[index]):
                    if width is None and len(batch):
                        width = (batch.vectors.shape[1], files[index])
                    elif width is not None and len(batch) and batch.vectors.shape[1] != width[0]:
                        raise SourceDataError(f"{files[index]}: column '{self.vec_col}' holds "
                                               f"{batch.vectors.shape[1]}-long vectors, but {width[1].name} holds "
                                               f"{width[0]}-long ones; every file needs the same width")
                    yield batch

    def _file_batches(self, pf: Any, index: int, n_files: int, batch_size: int, start_file: Any,
                      start_row: Any, file: Any = "") -> Iterator[Batch]:
        """The batches of one open file, from the cursor's row when it is the cursor's file."""
        rows = pf.metadata.num_rows
        skip = int(start_row) if index == int(start_file) else 0
        groups, done = [], 0
        for g in range(pf.metadata.num_row_groups):
            size = pf.metadata.row_group(g).num_rows
            if done + size <= skip and not groups:
                done += size
                continue
            groups.append(g)
        if not groups:
            pf.close()
            return
        for rb in pf.iter_batches(batch_size=batch_size, row_groups=groups, use_threads=False):
            if skip > done:
                cut = min(skip - done, rb.num_rows)
                rb, done = rb.slice(cut), done + cut
                if not rb.num_rows:
                    continue
            done += rb.num_rows
            last = index == n_files - 1 and done == rows
            batch = table_to_batch(rb, self.id_col, self.vec_col, None if last else [index, done],
                                   str(file), done - rb.num_rows)
            del rb
            release_arrow_memory()
            yield batch
        pf.close()

    def read_ids(self, ids: list[PointId]) -> Batch:
        """Scans only the id column, then reads just the row groups that hold a wanted id."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        files = self._files()
        if not files or not ids:
            return Batch([], np.zeros((0, self.dim() or 0), np.float32), [])
        parts = []
        for file in files:
            with reading_parquet(file):
                pf = pq.ParquetFile(file, buffer_size=READ_BUFFER, pre_buffer=False)
                id_type = pf.schema_arrow.field(self.id_col).type
                try:  # built as the column's type: ids past int64 (uint64) cannot pass through it
                    wanted = pa.array(list(ids), type=id_type)
                except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                    wanted = pa.array(list(ids)).cast(id_type)
                for g in range(pf.metadata.num_row_groups):
                    hits = pc.is_in(pf.read_row_group(g, columns=[self.id_col]).column(0), value_set=wanted)
                    if pc.any(hits).as_py():
                        parts.append(table_to_batch(pf.read_row_group(g).filter(hits), self.id_col, self.vec_col,
                                                    None))
                pf.close()
        release_arrow_memory()
        found = {i: (n, m) for n, part in enumerate(parts) for m, i in enumerate(part.ids)}
        order = [i for i in ids if i in found]
        vectors = np.stack([parts[found[i][0]].vectors[found[i][1]] for i in order]) if order else \
            np.zeros((0, self.dim() or 0), np.float32)
        return Batch(order, vectors, [parts[found[i][0]].payloads[found[i][1]] for i in order])

    def space_counts(self) -> dict[str, int]:
        import pyarrow.parquet as pq

        counts: dict[str, int] = {}
        files = self._files()
        schemas = check_file_schemas(files, _schema, self.id_col, self.vec_col)  # a damaged dataset is not healthy
        for file, schema in zip(files, schemas, strict=True):
            if SPACE_FIELD not in schema.names:
                counts[""] = counts.get("", 0) + _rows(file)
                continue
            with reading_parquet(file):
                values = pq.read_table(file, columns=[SPACE_FIELD]).column(0).to_pylist()
            for value in map(space_key, values):
                counts[value] = counts.get(value, 0) + 1
        return counts

    def create(self, dim: int, like: Connector | None = None, sample: Batch | None = None) -> None:
        self._writable()
        if self.folder.exists() and any(self.folder.iterdir()):
            raise VectorStoreError(f"{self.folder}: the target dataset folder exists and is not empty")
        self.folder.mkdir(parents=True, exist_ok=True)
        self._columns, self._columns_known = shadow_schema(like, self.id_col, self.vec_col, dim), True

    def drop(self) -> None:
        if self.folder.is_symlink():
            raise VectorStoreError(f"{self.folder}: is an alias; drop the dataset it points at instead")
        shutil.rmtree(self.folder, ignore_errors=True)

    def write(self, batch: Batch) -> None:
        import pyarrow.parquet as pq

        if not len(batch):
            return
        check_write_batch(self, batch, batch.vectors.shape[1])
        if not self._columns_known:  # a resumed migration: the files written so far hold the schema
            self._columns, self._columns_known = self.arrow_schema(), True
        table = batch_to_table(batch, self.id_col, self.vec_col, self._columns, self.uri.raw)
        if self._columns is not None:
            wanted = widen_schema(self._columns, table.schema, promote=True)
            if wanted != self._columns:  # a column null so far has a type now, or a field is new
                self._refit_files(wanted)
            table = fit_table(table, wanted)
        self._columns = table.schema
        digest = hashlib.sha256(repr(batch.ids).encode()).hexdigest()[:24]
        final = self.folder / f"part-{digest}.parquet"
        tmp = self.folder / f".{final.name}.tmp"
        try:
            pq.write_table(table, tmp, row_group_size=ROW_GROUP_ROWS, **plain_vectors(table.column_names, self.vec_col))
            os.replace(tmp, final)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise VectorStoreError(f"{final}: cannot write ({exc})") from exc
        finally:
            del table
            release_arrow_memory()

    def _refit_files(self, schema: Any) -> None:
        """Rewrite the files written before in ``schema``, so every file of the dataset has one schema and
        pyarrow reads the folder whole (a file per batch: an all-null column of the first would be null-typed)."""
        import pyarrow.parquet as pq

        for file in self._files():
            if _schema(file) == schema:
                continue
            with reading_parquet(file):
                table = fit_table(pq.read_table(file), schema)
            tmp = file.with_name(f".{file.name}.tmp")
            pq.write_table(table, tmp, row_group_size=ROW_GROUP_ROWS, **plain_vectors(table.column_names, self.vec_col))
            os.replace(tmp, file)
            del table
        release_arrow_memory()

    def delete_ids(self, ids: list[PointId]) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        doomed = pa.array(list(ids))
        for file in self._files():
            with reading_parquet(file):
                table = pq.read_table(file)
            keep = pc.invert(pc.is_in(table.column(self.id_col), value_set=doomed.cast(table.schema.field(
                self.id_col).type)))
            if pc.all(keep).as_py():
                continue
            kept = table.filter(keep)
            if len(kept):
                tmp = file.with_name(f".{file.name}.tmp")
                pq.write_table(kept, tmp, row_group_size=ROW_GROUP_ROWS, **plain_vectors(kept.column_names, self.vec_col))
                os.replace(tmp, file)
            else:
                file.unlink()

    def alias_target(self, alias: str) -> str | None:
        return link_target(self.folder.parent / alias)

    def alias_what(self, alias: str) -> str:
        return f"a symbolic link {self.folder.parent / alias} -> {self.alias_target(alias)}"

    def set_alias(self, alias: str, target: str) -> None:
        if not (self.folder.parent / target).is_dir():
            raise VectorStoreError(f"{self.folder.parent / target}: no such dataset to serve")
        swap_link(self.folder.parent / alias, target)
