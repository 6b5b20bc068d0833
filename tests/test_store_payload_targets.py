"""Payload values a target store would change are refused, naming the point and the field.

Qdrant and Chroma hold JSON-like values: qdrant-client wrote a timestamp, decimal or bytes as text, and
Chroma stored integers beyond 64 bits as one rounded float, each with exit 0 and verification ok. LanceDB
cannot name a top-level column with a '.', and failed in Lance's own words (exit 3). Ids from 2^63 on (a
Qdrant id) could not reach an Arrow store, and the refusal called the id a payload field.
"""

from __future__ import annotations

import datetime
import decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from store_fixtures import cli, fct_upgrade, one_line, read_all

N = 60


@pytest.fixture(scope="module")
def upgrade(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return fct_upgrade(tmp_path_factory.mktemp("payload_targets"))


def _parquet(root: Path, vectors: np.ndarray, ids: Any, **columns: Any) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = root / "src"
    folder.mkdir(parents=True)
    flat = pa.array(vectors[:N].astype(np.float32).ravel())
    pq.write_table(pa.table({"id": ids, "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]),
                             **columns}), folder / "part-0.parquet")
    return f"parquet://{folder}"


def _targets(root: Path) -> dict[str, str]:
    return {"qdrant": f"qdrant://{root / 'qd'}?collection=shadow", "chroma": f"chroma://{root / 'ch'}?collection=shadow",
            "lancedb": f"lancedb://{root / 'lance'}?table=shadow"}


@pytest.mark.parametrize(("target", "column", "values", "said"), [
    ("chroma", "big", [2**63 + i for i in range(N)], "holds the integer 9223372036854775808, beyond 64 bits"),
    ("chroma", "price", [decimal.Decimal("1.25")] * N, "holds a decimal"),
    ("qdrant", "when", [datetime.datetime(2024, 1, 1)] * N, "holds a timestamp"),
    ("qdrant", "blob", [b"abc"] * N, "holds a binary value"),
    ("qdrant", "raw", [b"\x80\x81"] * N, "holds a binary value"),
    # Chroma dropped a NaN's key (and failed in its own words on an empty list or a null in one)
    ("chroma", "share", [float("nan")] * N, "holds the number nan"),
    ("chroma", "tags", [[]] * N, "holds an empty list"),
    ("chroma", "tags", [[1, None]] * N, "holds a list holding nulls, lists or objects"),
], ids=["chroma-uint64", "chroma-decimal", "qdrant-timestamp", "qdrant-utf8-bytes", "qdrant-other-bytes",
        "chroma-nan", "chroma-empty-list", "chroma-null-in-list"])
def test_a_value_the_target_would_change_is_refused_naming_point_and_field(
        upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str, column: str,
        values: list[Any], said: str) -> None:
    import pyarrow as pa

    source = _parquet(tmp_path, upgrade["vectors"]["v1"], pa.array(range(N), pa.int64()),
                      **{column: pa.array(values, {"big": pa.uint64(), "tags": pa.list_(pa.int64())}.get(column))})
    code, _, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", source,
                       "--to", _targets(tmp_path)[target])
    one_line(code, err, f"point 0: payload field '{column}' {said}", "would not keep as it is",
             "convert the field in the source")
    assert "ids must be" not in err  # the 'id' in 'invalid utf-8' was taken for an id problem


def test_plain_payloads_reach_qdrant_and_chroma_unchanged(upgrade: dict, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow as pa

    source = _parquet(tmp_path, upgrade["vectors"]["v1"], pa.array(range(N), pa.int64()),
                      big=pa.array([2**63 - 1 - i for i in range(N)], pa.int64()),
                      note=pa.array([f"n{i}" for i in range(N)]), share=pa.array([i / 7 for i in range(N)]))
    for target in ("qdrant", "chroma"):
        code, out, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", source,
                             "--to", _targets(tmp_path)[target])
        assert code == 0 and out["verification"]["ok"], err
        points = read_all(_targets(tmp_path)[target])
        assert {k: points[k][1]["big"] for k in ("0", "59")} == {"0": 2**63 - 1, "59": 2**63 - 60}
        assert points["3"][1]["note"] == "n3" and points["3"][1]["share"] == 3 / 7


def test_a_dotted_column_name_is_refused_for_lancedb_in_one_line(upgrade: dict, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow as pa

    source = _parquet(tmp_path, upgrade["vectors"]["v1"], pa.array(range(N), pa.int64()),
                      **{"a.b": pa.array(range(N))})
    code, _, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", source,
                       "--to", _targets(tmp_path)["lancedb"])
    one_line(code, err, "column 'a.b': LanceDB column names cannot contain '.'")
    assert "LanceError" not in err and not (tmp_path / "lance" / "shadow.lance").exists()


def test_ids_from_2_63_reach_an_arrow_store_as_uint64(upgrade: dict, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A Qdrant collection's ids may be any unsigned 64-bit integer; the Parquet shadow keeps them."""
    from qdrant_client import QdrantClient, models

    ids = [2**63 + i for i in range(N)]
    vectors = upgrade["vectors"]["v1"][:N]
    client = QdrantClient(path=str(tmp_path / "qd"))
    client.create_collection("docs", vectors_config=models.VectorParams(size=vectors.shape[1],
                                                                         distance=models.Distance.COSINE))
    client.upsert("docs", points=models.Batch(ids=ids, vectors=vectors.tolist(), payloads=[{"n": i} for i in range(N)]))
    client.close()
    qdrant = _targets(tmp_path)["qdrant"].replace("shadow", "docs")
    for shadow in (f"parquet://{tmp_path / 'out'}", _targets(tmp_path)["lancedb"]):
        code, out, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", qdrant, "--to", shadow)
        assert code == 0 and out["verification"]["ok"], err
        assert sorted(int(k) for k in read_all(shadow)) == ids


def test_a_store_id_that_is_not_nfc_is_refused_with_both_spellings_escaped(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """'café' (NFD) would be stored as 'café' (NFC): the refusal showed two names that read alike."""
    import chromadb
    from chromadb.config import Settings

    from embridge.core.cli.main import main

    client = chromadb.PersistentClient(path=str(tmp_path / "ch"), settings=Settings(anonymized_telemetry=False))
    client.create_collection("docs").add(ids=["cafe\u0301", "plain"], embeddings=np.eye(2, 8).tolist())
    del client
    assert main(["init", "-w", str(tmp_path / "ws")]) == 0
    capsys.readouterr()
    code = main(["import", "-w", str(tmp_path / "ws"), "--from", f"chroma://{tmp_path / 'ch'}?collection=docs",
                 "--model", "old"])
    one_line(code, capsys.readouterr().err, "point 'cafe\\u0301': an item key is NFC text",
             "would be stored as 'caf\\xe9'; rename the point")


def test_ids_from_2_63_after_smaller_ones_widen_an_arrow_shadow(upgrade: dict, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Qdrant reads its ids in order: batches of ids below 2^63 fixed the column as int64, and the first id above
    failed the migration part way, with advice that could not work."""
    from qdrant_client import QdrantClient, models

    ids = [*range(1, 11), 2**63 - 1, 2**63, 2**63 + 5, 2**64 - 1]
    vectors = upgrade["vectors"]["v1"][:len(ids)]
    client = QdrantClient(path=str(tmp_path / "qd"))
    client.create_collection("docs", vectors_config=models.VectorParams(size=vectors.shape[1],
                                                                         distance=models.Distance.COSINE))
    client.upsert("docs", points=models.Batch(ids=ids, vectors=vectors.tolist()))
    client.close()
    for shadow in (f"parquet://{tmp_path / 'out'}", f"lancedb://{tmp_path / 'lance'}?table=shadow"):
        code, out, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from",
                             f"qdrant://{tmp_path / 'qd'}?collection=docs", "--to", shadow, "--batch", "4")
        assert code == 0 and out["verification"]["ok"], err
        points = read_all(shadow)
        assert sorted(int(k) for k in points) == ids
        assert all(np.isfinite(v).all() and v.shape == (32,) for v, _ in points.values())
