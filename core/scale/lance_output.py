"""Lance dataset output for the gallery transform: one set of fragments per partition, one commit at the end.

This is Lance's distributed-write pattern. Whoever transforms a partition (the local loop or a Ray
worker) writes its rows as uncommitted fragments into the output dataset's folder and then records
them in a small marker file (``_embridge_fragments/<partition>.json``, written atomically), so
a marker that exists means the partition is finished, exactly as an output Parquet file does for the
Parquet output. When every partition is finished, the driver commits all fragments in partition order
as one new dataset version (an atomic manifest write), so a reader never sees a half-transformed
dataset, and the rows come out in the same order as from the local engine. Data files that no
version references (a partition a killed run left half written) are removed after the commit; those
of earlier versions stay, so a reader holding one keeps reading it. A rerun after a commit commits the
same fragments again, which changes nothing but the version number; a rerun after a source partition
changed or was added redoes those partitions only, writing their fragments beside the committed
version, and commits the whole again as a new version.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from embridge.core.errors import InputError
from embridge.core.paths import owned_temps, remove_no_follow
from embridge.core.store.files import atomic_write_text

MARKERS = "_embridge_fragments"
COMMITTED = "_embridge_committed.json"


def is_lance_uri(uri: str) -> bool:
    """Whether ``uri`` names a Lance dataset (``lance:///x.lance`` or ``lancedb:///db?table=NAME``)."""
    return uri.startswith(("lance://", "lancedb://"))


def marker_path(dataset: Path, partition: str) -> Path:
    """Where partition ``partition`` records its written fragments (its existence = finished)."""
    return dataset / MARKERS / f"{partition}.json"


def prepare(dataset: Path) -> None:
    """The marker folder exists; a half-written marker left by a killed run is removed."""
    (dataset / MARKERS).mkdir(parents=True, exist_ok=True)
    for stale in list(owned_temps(dataset / MARKERS)):
        remove_no_follow(stale)


def write_partition(table: Any, marker: Path) -> None:
    """Write ``table`` as uncommitted fragments of the dataset above ``marker``, then record them."""
    import lance
    import pyarrow as pa

    dataset = marker.parent.parent
    # once a version is committed (a rerun after a source partition changed or was added), new fragments are
    # written beside it ("create" refuses an existing dataset); the commit's Overwrite lists them all again
    mode = "append" if (dataset / "_versions").is_dir() else "create"
    fragments = lance.fragment.write_fragments(table, str(dataset), schema=table.schema, mode=mode)
    schema = base64.b64encode(table.schema.serialize().to_pybytes()).decode("ascii")
    record = {"rows": table.num_rows, "schema": schema, "fragments": [f.to_json() for f in fragments],
              "arrow": pa.__version__}
    atomic_write_text(marker, json.dumps(record))


def _read_marker(marker: Path) -> dict:
    """A finished partition's record, or one line naming the marker when it was damaged by hand."""
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
        if not isinstance(record, dict) or not isinstance(record.get("fragments"), list) or "schema" not in record:
            raise ValueError("not a partition record")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(marker, f"the record of a finished partition cannot be read ({exc.__class__.__name__}); "
                         "delete it and run the same transform again to redo that partition") from None
    return record


def finished_rows(marker: Path) -> int:
    """The rows a finished partition wrote, as its marker records them."""
    return int(_read_marker(marker)["rows"])


def commit(dataset: Path, partitions: list[str]) -> int:
    """Commit every partition's fragments, in ``partitions`` order, as one version; returns it."""
    import lance
    import pyarrow as pa
    from lance.fragment import FragmentMetadata

    records = [_read_marker(marker_path(dataset, name)) for name in partitions]
    if not records:
        raise InputError(dataset, "no partition was transformed, so there is nothing to commit")
    schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(records[0]["schema"])))
    fragments = [FragmentMetadata.from_json(json.dumps(f)) for r in records for f in r["fragments"]]
    version = lance.LanceDataset.commit(str(dataset), lance.LanceOperation.Overwrite(schema, fragments)).version
    _remove_unreferenced(dataset, records)
    atomic_write_text(dataset / COMMITTED, json.dumps({"version": version, "partitions": partitions}))
    return int(version)


def committed_version(dataset: Path, partitions: list[str]) -> int | None:
    """The version an earlier run committed for exactly these partitions, if any."""
    try:
        record = json.loads((dataset / COMMITTED).read_text())
    except (OSError, ValueError):
        return None
    return int(record["version"]) if record.get("partitions") == partitions else None


def _remove_unreferenced(dataset: Path, records: list[dict[str, Any]]) -> None:
    """Delete data files that no version of the dataset references (left by a partition killed mid-write).

    Every version's files stay: a reader holding an earlier version (a server, a LanceDB checkout) keeps
    reading it after a rerun commits a new one; dropping old versions is Lance's own cleanup's call."""
    import lance

    keep = {Path(f["path"]).name for r in records for frag in r["fragments"] for f in frag["files"]}
    for entry in lance.dataset(str(dataset)).versions():
        for fragment in lance.dataset(str(dataset), version=entry["version"]).get_fragments():
            keep.update(Path(_path(f)).name for f in fragment.data_files())
    for file in (dataset / "data").glob("*"):
        if file.is_file() and file.name not in keep:
            file.unlink()


def _path(data_file: Any) -> str:
    """A Lance data file's path (an attribute in some releases, a method in others)."""
    path = data_file.path
    return str(path() if callable(path) else path)
