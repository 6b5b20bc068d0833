"""Partitioned datasets as units of work: the files of a Parquet folder or the fragments of a Lance dataset.

A partition is the unit a scale-out job reads, transforms, writes and resumes by. It must be small
enough to travel as a row of a Ray Data dataset (a name, a kind, a path and a fragment id) and be read
the same way by the local loop and by any worker, so both engines see the same rows in the same order.

Sources: ``parquet:///folder`` (or a plain folder: each ``.parquet`` file is a partition),
``lance:///path/table.lance`` (each fragment is a partition), and ``lancedb:///db?table=NAME`` (the
table's Lance dataset, ``db/NAME.lance``, read fragment by fragment; an alias link is followed).
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from embridge.core.errors import InputError
from embridge.core.extras import install_hint

KINDS = ("parquet", "lance")


@dataclass(frozen=True)
class Partition:
    """One unit of work; ``name`` is also the name of its output file."""

    name: str
    kind: str
    path: str
    fragment: int = -1
    version: int = -1  # a Lance dataset's version when the job listed it: every fragment is read as of then

    @property
    def where(self) -> str:
        """The partition as a message names it: a Parquet file, or a Lance dataset with its fragment (row
        numbers count within it)."""
        return self.path if self.kind == "parquet" else f"{self.path} (fragment {self.fragment})"

    def to_row(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Partition:
        return cls(str(row["name"]), str(row["kind"]), str(row["path"]), int(row["fragment"]),
                   int(row.get("version", -1)))


@dataclass(frozen=True)
class SourceDataset:
    """A partitioned input: its kind, its root folder, its partitions in order, and a version tag."""

    kind: str
    root: Path
    partitions: list[Partition]
    version: str


_SCHEME_TYPO = re.compile(r"(?i)(parquet|lance|lancedb|qdrant|chroma|postgres|postgresql|faiss|file):(?!//)")


def parquet_folder(uri: str, option: str) -> Path:
    """The folder of a ``parquet:///dir`` URI (or a plain path). A store scheme without its '//' (parquet:/x)
    is refused, not taken for a folder named 'parquet:' in the current one."""
    typo = _SCHEME_TYPO.match(uri)
    if typo:  # the same address written as intended: the scheme, '://', then the absolute path
        meant = f"{typo.group(1)}:///{uri[typo.end():].lstrip('/')}"
        raise InputError(option, f"{uri}: a dataset URI needs '://' after its scheme (did you mean {meant}?)")
    if uri.startswith("parquet://"):
        from embridge.core.connectors.connector import StoreURI

        path = StoreURI.parse(uri, option).path
    elif "://" in uri:
        raise InputError(option, f"{uri}: expected a parquet:///folder dataset")
    else:
        path = uri
    if not path or path == "/":
        raise InputError(option, f"{uri}: name the dataset folder, e.g. parquet:///data/gallery")
    return Path(os.path.abspath(path.rstrip("/")))  # Ray workers run in their own folder: never relative


def dataset_params(uri: str, option: str, allowed: tuple[str, ...] = ()) -> dict[str, str]:
    """The query parameters of a dataset URI, any but ``allowed`` (and a LanceDB URI's table) refused: a
    misspelt or unsupported one would otherwise be ignored and the wrong column read."""
    if "://" not in uri:
        return {}
    from embridge.core.connectors.connector import StoreURI

    parsed = StoreURI.parse(uri, option)
    takes = (*allowed, *(("table", "collection") if parsed.scheme == "lancedb" else ()))
    extra = sorted(set(parsed.params) - set(takes))
    if extra:
        what = f"it takes {', '.join(f'?{t}=' for t in takes)}" if takes else "it takes no parameters here"
        raise InputError(option, f"{uri}: does not take '{extra[0]}' ({what})")
    return dict(parsed.params)


def column_choice(option: str, given: str | None, param: str, params: dict[str, str], default: str) -> str:
    """A column named by an option, by the URI's ``?param=``, or the default; the two naming different ones is refused."""
    from_uri = params.get(param)
    if given is not None and from_uri is not None and given != from_uri:
        raise InputError(option, f"names column '{given}' and ?{param}= on --from names '{from_uri}'; give one")
    return given or from_uri or default


def parquet_files(folder: Path) -> list[Path]:
    """The dataset's data files (:func:`embridge.core.connectors.parquet.dataset_files`), at least one."""
    from embridge.core.connectors.parquet import dataset_files

    files, problem = dataset_files(folder)
    if problem is not None:
        raise InputError(*problem)
    if not files:
        raise InputError(folder, "holds no .parquet files")
    return files


def lance_path(uri: str, option: str) -> Path:
    """The Lance dataset folder named by ``lance:///x.lance`` or ``lancedb:///db?table=NAME``."""
    from embridge.core.connectors.connector import StoreURI

    parsed = StoreURI.parse(uri, option)
    if not parsed.path or parsed.path == "/":
        raise InputError(option, f"{uri}: name the dataset, e.g. lance:///data/gallery.lance")
    root = Path(os.path.abspath(parsed.path.rstrip("/")))  # Ray workers run in their own folder: never relative
    if parsed.scheme == "lance":
        return root
    table = parsed.param("table", "collection")
    if not table:
        raise InputError(option, f"{uri}: name the table, e.g. lancedb:///data/db?table=docs")
    return root / f"{table}.lance"


def open_source(uri: str, option: str = "--from") -> SourceDataset:
    """The partitions of the dataset ``uri`` names; one clear line when it is missing or unreadable."""
    if uri.startswith(("lance://", "lancedb://")):
        return _lance_source(lance_path(uri, option), option)
    if "://" in uri and not uri.startswith("parquet://"):
        raise InputError(option, f"{uri}: reads parquet:///folder, lance:///dataset.lance or "
                         "lancedb:///db?table=NAME datasets")
    folder = parquet_folder(uri, option)
    files = parquet_files(folder)
    stamp = ";".join(f"{f.name}:{f.stat().st_size}" for f in files)
    return SourceDataset("parquet", folder, [Partition(f.name, "parquet", str(f)) for f in files], stamp)


def _lance_source(path: Path, option: str) -> SourceDataset:
    try:
        import lance
    except ImportError as exc:
        raise InputError(option, f"Lance datasets need the lance package (pylance); {install_hint('stores')}") from exc
    real = path.resolve()
    if not real.is_dir():
        raise InputError(option, f"{path}: no such Lance dataset")
    try:
        ds = lance.dataset(str(real))
        fragments = sorted(int(f.fragment_id) for f in ds.get_fragments())
    except Exception as exc:  # lance raises its own error types for a folder that is not a dataset
        raise InputError(option, f"{path}: not a readable Lance dataset ({str(exc).splitlines()[0]})") from exc
    if not fragments:
        raise InputError(option, f"{path}: the Lance dataset holds no rows")
    parts = [Partition(f"fragment-{fid:06d}.parquet", "lance", str(real), fid, int(ds.version)) for fid in fragments]
    return SourceDataset("lance", real, parts, f"lance-version:{ds.version}")


def read_schema(part: Partition) -> Any:
    """The Arrow schema of a partition, without reading its rows where the format allows."""
    import pyarrow.parquet as pq

    from embridge.core.connectors.arrow_common import reading_parquet

    if part.kind == "parquet":
        with reading_parquet(part.path, as_input=True):
            return pq.read_schema(part.path)
    return _lance_at(part).schema


def read_partition(part: Partition, columns: list[str] | None = None) -> Any:
    """All rows of one partition (``columns`` of them, else every column) as an Arrow table, in stored order."""
    import pyarrow.parquet as pq

    from embridge.core.connectors.arrow_common import reading_parquet

    if part.kind == "parquet":
        with reading_parquet(part.path, as_input=True):
            return pq.read_table(part.path, columns=columns)
    if part.kind == "lance":
        fragment = _lance_at(part).get_fragment(part.fragment)
        if fragment is None:
            raise InputError(part.where, f"is not in the Lance dataset's version {part.version} any more; "
                             "the dataset changed while this job read it: run it again")
        return fragment.to_table(columns=columns)
    raise InputError(part.path, f"unknown partition kind {part.kind!r} (known: {', '.join(KINDS)})")


def _lance_at(part: Partition) -> Any:
    """The partition's Lance dataset as of the version the job listed (a delete or a compaction made since
    writes a newer version; reading the newest would mix the two in one output)."""
    import lance

    if part.version < 0:
        return lance.dataset(part.path)
    try:
        return lance.dataset(part.path, version=part.version)
    except Exception as exc:  # lance raises its own types for a version cleaned up since
        raise InputError(part.where, f"the Lance dataset's version {part.version}, which this job reads, is gone "
                         f"({str(exc).splitlines()[0]}): its old versions were cleaned up while the job ran; run "
                         "it again") from exc

