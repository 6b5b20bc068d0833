"""A Qdrant migration's shadow keeps the source collection's settings, or is refused before it is made.

The shadow takes the migrated vector's settings (distance, HNSW graph, quantization, on-disk storage)
with only the size changed, so the application searches it as it searched the source. A source
holding vectors a migration does not carry (other named vectors, sparse vectors) is refused before
anything is written: after a switch the application would serve a collection without them. A
multivector collection (several vectors per point) is refused in one line by import, migrate and check.
Every store is a real embedded Qdrant (local mode) filled through qdrant-client.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from store_fixtures import cli, fct_upgrade, one_line, unit


@pytest.fixture(scope="module")
def upgrade(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return fct_upgrade(tmp_path_factory.mktemp("qdrant-shadow"))



def migrate(capsys: pytest.CaptureFixture[str], upgrade: dict, source: str, target: str) -> tuple[int, Any, str]:
    return cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", source, "--to", target)


def tuned(distance: Any, size: int = 16) -> Any:
    """Vector settings far from Qdrant's defaults: a denser graph, INT8 quantization, vectors on disk."""
    from qdrant_client import models

    return models.VectorParams(size=size, distance=distance, on_disk=True,
                               hnsw_config=models.HnswConfigDiff(m=32, ef_construct=64),
                               quantization_config=models.ScalarQuantization(scalar=models.ScalarQuantizationConfig(
                                   type=models.ScalarType.INT8, quantile=0.95, always_ram=True)))


@pytest.mark.parametrize("vector", [None, "img"])
def test_the_shadow_takes_the_migrated_vectors_settings(vector: str | None, upgrade: dict, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from qdrant_client import QdrantClient, models

    v1 = upgrade["vectors"]["v1"][:40].astype(np.float32)
    client = QdrantClient(path=str(tmp_path / "qd"))
    params = tuned(models.Distance.DOT)
    client.create_collection("docs", vectors_config={vector: params} if vector else params,
                             metadata={"owner": "search-team"})
    client.upsert("docs", points=models.Batch(ids=list(range(len(v1))), vectors={vector: v1.tolist()} if vector
                                              else v1.tolist(), payloads=[{"n": i} for i in range(len(v1))]))
    client.close()
    query = f"&vector={vector}" if vector else ""
    code, out, err = migrate(capsys, upgrade, f"qdrant://{tmp_path / 'qd'}?collection=docs{query}",
                             f"qdrant://{tmp_path / 'qd'}?collection=docs_v2{query}")
    assert code == 0 and out["verification"]["ok"], err

    client = QdrantClient(path=str(tmp_path / "qd"))
    try:
        config = client.get_collection("docs_v2").config
        got = config.params.vectors[vector] if vector else config.params.vectors
        assert isinstance(got, models.VectorParams)
        assert got.size == 32 and got.distance == models.Distance.DOT and got.on_disk is True
        assert got.hnsw_config is not None and (got.hnsw_config.m, got.hnsw_config.ef_construct) == (32, 64)
        scalar = got.quantization_config.scalar  # type: ignore[union-attr]
        assert (scalar.type, scalar.quantile, scalar.always_ram) == (models.ScalarType.INT8, 0.95, True)
        assert got.multivector_config is None
        assert config.metadata == {"owner": "search-team"}
        if vector:
            assert list(config.params.vectors) == [vector]
        records, _ = client.scroll("docs_v2", limit=100, with_vectors=True, with_payload=True)
        assert len(records) == len(v1)
        written = np.asarray([r.vector[vector] if vector else r.vector for r in records], np.float32)
        assert written.shape == (len(v1), 32)
        assert np.allclose(np.linalg.norm(written, axis=1), 1.0, atol=1e-5)  # a DOT collection: stored as written
    finally:
        client.close()


def _lossy_source(client: Any, kind: str, vectors: np.ndarray) -> str:
    """A collection holding, besides the vector a migration carries, vectors it would not; their names."""
    from qdrant_client import models

    dense = models.VectorParams(size=16, distance=models.Distance.COSINE)
    sparse = {"kw": models.SparseVectorParams()}
    ids = list(range(len(vectors)))
    words = [models.SparseVector(indices=[i, i + 7], values=[0.5, 1.5]) for i in ids]
    if kind == "named":
        client.create_collection("docs", vectors_config={"img": dense, "txt": models.VectorParams(
            size=8, distance=models.Distance.EUCLID)})
        points = [models.PointStruct(id=i, vector={"img": v.tolist(), "txt": v[:8].tolist()}) for i, v in
                  zip(ids, vectors, strict=True)]
    elif kind == "sparse":
        client.create_collection("docs", vectors_config=dense, sparse_vectors_config=sparse)
        points = [models.PointStruct(id=i, vector={"": v.tolist(), "kw": w}) for i, v, w in
                  zip(ids, vectors, words, strict=True)]
    else:
        client.create_collection("docs", vectors_config={"img": dense}, sparse_vectors_config=sparse)
        points = [models.PointStruct(id=i, vector={"img": v.tolist(), "kw": w}) for i, v, w in
                  zip(ids, vectors, words, strict=True)]
    client.upsert("docs", points=points)
    return "&vector=img" if kind != "sparse" else ""


@pytest.mark.parametrize(("kind", "lost"), [("named", "named vector 'txt'"), ("sparse", "sparse vector 'kw'"),
                                            ("named_sparse", "sparse vector 'kw'")])
def test_vectors_the_migration_would_not_carry_are_refused_before_anything_is_written(
        kind: str, lost: str, upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from qdrant_client import QdrantClient

    v1 = upgrade["vectors"]["v1"][:30].astype(np.float32)
    store = tmp_path / "qd"
    client = QdrantClient(path=str(store))
    query = _lossy_source(client, kind, v1)
    client.close()
    client = QdrantClient(path=str(store))  # read back as stored (local mode keeps float32 on disk)
    before, _ = client.scroll("docs", limit=100, with_vectors=True, with_payload=True)
    client.close()
    source = f"qdrant://{store}?collection=docs{query}"
    code, _, err = migrate(capsys, upgrade, source, f"qdrant://{store}?collection=docs_v2{query}")
    one_line(code, err, f"Qdrant {store} collection 'docs'", lost, "the shadow would lose")
    assert not (store.parent / "qd.embridge" / "migrate-docs_v2.json").exists()  # no checkpoint either
    code, _, err = migrate(capsys, upgrade, source, f"parquet://{tmp_path / 'pq'}/docs_v2")  # nor into another store
    one_line(code, err, lost, "the shadow would lose")
    assert not (tmp_path / "pq").exists() and not (tmp_path / "pq.embridge").exists()

    client = QdrantClient(path=str(store))
    try:
        assert [c.name for c in client.get_collections().collections] == ["docs"]  # no shadow was made
        assert client.scroll("docs", limit=100, with_vectors=True, with_payload=True)[0] == before
    finally:
        client.close()
    # reading one vector of such a collection into a workspace loses nothing of the store: still allowed
    ws = tmp_path / "ws"
    assert cli(capsys, "init", "--workspace", str(ws))[0] == 0
    code, out, err = cli(capsys, "import", "--workspace", str(ws), "--from", source, "--model", "m")
    assert code == 0 and (out["count"], out["new_items"], out["dim"]) == (len(v1), len(v1), 16), err


@pytest.mark.parametrize("vector", [None, "colbert"])
def test_a_multivector_collection_is_refused_in_one_line(vector: str | None, upgrade: dict, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from qdrant_client import QdrantClient, models

    v1 = unit(upgrade["vectors"]["v1"][:51].astype(np.float32))
    store = tmp_path / "qd"
    client = QdrantClient(path=str(store))
    params = models.VectorParams(size=16, distance=models.Distance.COSINE, multivector_config=models.MultiVectorConfig(
        comparator=models.MultiVectorComparator.MAX_SIM))
    client.create_collection("multi", vectors_config={vector: params} if vector else params)
    client.upsert("multi", points=[models.PointStruct(id=i, vector={vector: [v1[i].tolist(), v1[i + 1].tolist()]}
                                                      if vector else [v1[i].tolist(), v1[i + 1].tolist()])
                                   for i in range(50)])
    client.close()
    source = f"qdrant://{store}?collection=multi" + (f"&vector={vector}" if vector else "")
    needles = (f"Qdrant {store} collection 'multi'", "multivector collections are not supported")
    code, _, err = migrate(capsys, upgrade, source, f"qdrant://{store}?collection=multi_v2")
    one_line(code, err, *needles)
    ws = tmp_path / "ws"
    assert cli(capsys, "init", "--workspace", str(ws))[0] == 0
    code, _, err = cli(capsys, "import", "--workspace", str(ws), "--from", source, "--model", "m")
    one_line(code, err, *needles)
    code, _, err = cli(capsys, "check", "--uri", source)
    one_line(code, err, *needles)
    code, _, err = cli(capsys, "check", "--uri", source, "--label-field", "label", "--served-as", "v1")
    one_line(code, err, *needles)
    client = QdrantClient(path=str(store))
    try:
        assert [c.name for c in client.get_collections().collections] == ["multi"]  # no shadow was made
    finally:
        client.close()
