"""A migration's shadow keeps the Arrow types of the source's payload columns.

The switched table is read (and appended to) by the source's own application, so a shadow whose
int8 became int64, decimal(10,2) became decimal(3,2) or an all-null string column became null-typed
would refuse the rows that application writes. Sources are written with pyarrow and lancedb
directly; a column null in every row of the first batch must not fix the column's type either.
"""

from __future__ import annotations

import datetime
import decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from store_fixtures import cli, fct_upgrade, read_all

from embridge.core.connectors.connector import SPACE_FIELD

BATCH = 50  # the late-filled column is null in the first LATE rows, so in every row of the first batch
LATE = 120


@pytest.fixture(scope="module")
def upgrade(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The bundle workspace's gallery (v1 vectors, labels) and its fct bundle, exported once."""
    return fct_upgrade(tmp_path_factory.mktemp("payload_types"))


def _fsl(vectors: np.ndarray) -> Any:
    import pyarrow as pa

    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.astype(np.float32).ravel()), vectors.shape[1])


def typed_table(vectors: np.ndarray) -> Any:
    """Points with payload columns of the types an inferring writer would change."""
    import pyarrow as pa

    n = len(vectors)
    start = datetime.datetime(2024, 1, 1)
    return pa.table({
        "id": pa.array(range(n), pa.int64()), "vector": _fsl(vectors),
        "i8": pa.array([i % 100 for i in range(n)], pa.int8()),
        "u32": pa.array(range(n), pa.uint32()),
        "f32": pa.array([i / 3 for i in range(n)], pa.float32()),
        "ts": pa.array([start + datetime.timedelta(seconds=i) for i in range(n)], pa.timestamp("ms")),
        "dec": pa.array([decimal.Decimal("1.25")] * n, pa.decimal128(10, 2)),
        "cat": pa.array([("a", "b", "c")[i % 3] for i in range(n)]).dictionary_encode(),
        "lst": pa.array([[1.5, 2.5]] * n, pa.list_(pa.float32())),
        "nul": pa.array([None] * n, pa.string()),
        "late": pa.array([None if i < LATE else f"note {i}" for i in range(n)], pa.string()),
    })


def make_source(kind: str, root: Path, vectors: np.ndarray) -> tuple[str, str]:
    """The source (written with pyarrow or lancedb) and its shadow's URI in the same store."""
    import pyarrow.parquet as pq

    table = typed_table(vectors)
    if kind == "parquet":
        (root / "pq" / "types").mkdir(parents=True)
        pq.write_table(table, root / "pq" / "types" / "part-0.parquet")
        return f"parquet://{root}/pq/types", f"parquet://{root}/pq/types_v2"
    import lancedb

    lancedb.connect(str(root / "lance")).create_table("types", data=table)
    return f"lancedb://{root}/lance?table=types", f"lancedb://{root}/lance?table=types_v2"


def shadow_schema(kind: str, root: Path) -> Any:
    """The shadow's schema, read by pyarrow (a Parquet folder whole) or lancedb."""
    import pyarrow.parquet as pq

    if kind == "parquet":
        return pq.read_table(root / "pq" / "types_v2").schema  # fails when the files disagree on a type
    import lancedb

    return lancedb.connect(str(root / "lance")).open_table("types_v2").schema


def app_row(source: Any, dim: int) -> dict[str, Any]:
    """A row as the source's application writes it, with values the source's types hold."""
    row = source.slice(0, 1).to_pylist()[0]
    row.update(id=10**6, vector=[0.25] * dim, dec=decimal.Decimal("123.45"), nul="a note", late="later",
               i8=-7, u32=4_000_000_000)
    return row


def append(kind: str, root: Path, row: dict[str, Any], schema: Any) -> int:
    """Append the row the way the application does; the shadow's row count after it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if kind == "parquet":
        pq.write_table(pa.Table.from_pylist([{**row, SPACE_FIELD: None}], schema=schema),
                       root / "pq" / "types_v2" / "zz-app.parquet")
        return pq.read_table(root / "pq" / "types_v2").num_rows
    import lancedb

    table = lancedb.connect(str(root / "lance")).open_table("types_v2")
    table.add([row])
    return int(table.count_rows())


@pytest.mark.parametrize("kind", ["parquet", "lancedb"])
def test_shadow_keeps_the_source_payload_types(kind: str, upgrade: dict, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow as pa

    v1 = upgrade["vectors"]["v1"]
    src, dst = make_source(kind, tmp_path, v1)
    code, result, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", src, "--to", dst,
                            "--batch", str(BATCH))
    assert code == 0, err
    assert result["status"] == "completed" and result["written"] == len(v1) and result["verification"]["ok"]

    source = typed_table(v1)
    schema = shadow_schema(kind, tmp_path)
    for field in source.schema:
        if field.name != "vector":
            assert schema.field(field.name) == field, (field, schema.field(field.name))
    assert schema.field("vector").type == pa.list_(pa.float32(), 32)
    assert schema.field(SPACE_FIELD).type == pa.string()
    assert set(schema.names) == {*source.schema.names, SPACE_FIELD}

    points = read_all(dst)  # the payloads as written, the late column's values included
    assert points["0"][1]["late"] is None and points[str(LATE)][1]["late"] == f"note {LATE}"
    assert points["5"][1]["dec"] == decimal.Decimal("1.25") and points["5"][1]["cat"] == "c"

    assert append(kind, tmp_path, app_row(source, 32), schema) == len(v1) + 1


@pytest.mark.parametrize("kind", ["parquet", "lancedb"])
def test_untyped_source_column_null_in_the_first_batch(kind: str, upgrade: dict, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A Qdrant source's payloads are Python values: a field null in every point of the first batch (and
    one that only later points hold) takes the type a later batch brings, in one schema for the shadow."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from qdrant_client import QdrantClient, models

    v1 = upgrade["vectors"]["v1"]
    client = QdrantClient(path=str(tmp_path / "qdrant"))
    client.create_collection("docs", vectors_config=models.VectorParams(size=16, distance=models.Distance.COSINE))
    payloads = [{"label": "x", "late": None if i < LATE else f"note {i}", **({"extra": i} if i >= LATE else {})}
                for i in range(len(v1))]
    client.upsert("docs", points=models.Batch(ids=list(range(len(v1))), vectors=v1.tolist(), payloads=payloads))
    client.close()
    if kind == "parquet":
        dst = f"parquet://{tmp_path}/pq/docs_v2"
    else:
        dst = f"lancedb://{tmp_path}/lance?table=docs_v2"
    code, result, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from",
                            f"qdrant://{tmp_path}/qdrant?collection=docs", "--to", dst, "--batch", str(BATCH))
    assert code == 0, err
    assert result["status"] == "completed" and result["written"] == len(v1)

    if kind == "parquet":
        folder = tmp_path / "pq" / "docs_v2"
        schemas = {str(pq.read_schema(f)) for f in folder.glob("*.parquet")}
        assert len(schemas) == 1, schemas  # every file one schema
        table = pq.read_table(folder)
    else:
        import lancedb

        table = lancedb.connect(str(tmp_path / "lance")).open_table("docs_v2").to_arrow()
    assert table.num_rows == len(v1)
    assert table.schema.field("late").type == pa.string() and table.schema.field("extra").type == pa.int64()
    rows = {r["id"]: r for r in table.select(["id", "late", "extra"]).to_pylist()}
    assert rows[0]["late"] is None and rows[0]["extra"] is None
    assert rows[LATE + 3]["late"] == f"note {LATE + 3}" and rows[LATE + 3]["extra"] == LATE + 3


@pytest.mark.parametrize("target", ["parquet", "lancedb"])
def test_object_payloads_an_arrow_column_cannot_hold_are_refused_not_changed(
        target: str, upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An object payload whose keys change after the first batch lost the new keys' values (cast by key
    name), and an empty object made a LanceDB shadow read back with its later columns shifted (the
    model-version field holding a title); both migrations said 'verified'. Both are refused, naming
    the field, before anything is lost."""
    from qdrant_client import QdrantClient, models
    from store_fixtures import one_line

    v1 = upgrade["vectors"]["v1"][:2 * BATCH].astype(np.float32)
    cases = {"keys": [{"meta": {"author": f"a{i}"} if i < BATCH else {"source": f"s{i}"}} for i in range(len(v1))],
             "empty": [{"opts": {}, "title": f"t{i}"} for i in range(len(v1))]}
    for case, payloads in cases.items():
        folder = tmp_path / case
        client = QdrantClient(path=str(folder / "qd"))
        client.create_collection("docs", vectors_config=models.VectorParams(size=v1.shape[1],
                                                                              distance=models.Distance.COSINE))
        client.upsert("docs", points=models.Batch(ids=list(range(len(v1))), vectors=v1.tolist(), payloads=payloads))
        client.close()
        shadow = f"parquet://{folder / 'pq'}" if target == "parquet" else f"lancedb://{folder / 'ldb'}?table=docs_v2"
        code, _out, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--batch", str(BATCH),
                              "--from", f"qdrant://{folder / 'qd'}?collection=docs", "--to", shadow)
        if case == "keys":
            one_line(code, err, "payload field 'meta.source' holds values, but the column the earlier points made "
                                "for 'meta' has no such key")
        else:
            one_line(code, err, "payload field 'opts' is an empty object ({}) in every point of the batch")
