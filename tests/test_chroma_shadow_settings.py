"""A Chroma migration's shadow keeps the source collection's distance and index configuration.

Chroma collections made with ``configuration={'hnsw': {...}}``, or with no metadata at all (Chroma's
default space is l2), used to get a cosine shadow with default settings, so the distances the
application reads changed. Each store is a real embedded Chroma (PersistentClient) filled through chromadb.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from store_fixtures import cli, fct_upgrade


@pytest.fixture(scope="module")
def upgrade(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return fct_upgrade(tmp_path_factory.mktemp("chroma-shadow"))


def _client(path: Path) -> Any:
    import chromadb
    from chromadb.config import Settings

    return chromadb.PersistentClient(path=str(path), settings=Settings(anonymized_telemetry=False))


CASES = {  # how the source was made -> (space, max_neighbors, ef_construction) its shadow must have
    "configuration": ({"configuration": {"hnsw": {"space": "ip", "max_neighbors": 32, "ef_construction": 64,
                                                  "ef_search": 50}}}, ("ip", 32, 64, 50)),
    "no metadata": ({}, ("l2", 16, 100, 100)),
    "metadata": ({"metadata": {"hnsw:space": "cosine", "hnsw:M": 24, "owner": "search-team"}},
                 ("cosine", 24, 100, 100)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_shadow_takes_the_sources_space_and_index_configuration(case: str, upgrade: dict, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    made, (space, neighbors, construction, search) = CASES[case]
    v1 = upgrade["vectors"]["v1"][:40].astype(np.float32)
    client = _client(tmp_path / "ch")
    col = client.create_collection("docs", **made)
    col.add(ids=[f"p{i}" for i in range(len(v1))], embeddings=v1, metadatas=[{"n": i} for i in range(len(v1))])
    source_metadata = col.metadata
    del col, client
    code, out, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from",
                         f"chroma://{tmp_path / 'ch'}?collection=docs", "--to",
                         f"chroma://{tmp_path / 'ch'}?collection=docs_v2")
    assert code == 0 and out["verification"]["ok"], err

    client = _client(tmp_path / "ch")
    shadow = client.get_collection("docs_v2")
    hnsw = shadow.configuration_json["hnsw"]
    assert (hnsw["space"], hnsw["max_neighbors"], hnsw["ef_construction"], hnsw["ef_search"]) == \
        (space, neighbors, construction, search)
    assert shadow.metadata == source_metadata  # the user's own fields too, unchanged
    # the distances the application reads are the source's kind: a point queried with twice its own vector
    got = shadow.get(ids=["p3"], include=["embeddings"])
    vector = np.asarray(got["embeddings"][0], np.float32)
    assert vector.shape == (32,) and abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5
    found = shadow.query(query_embeddings=[2 * vector], n_results=1, include=["distances"])
    assert found["ids"][0][0] == "p3"
    expected = {"ip": 1.0 - 2.0, "l2": 1.0, "cosine": 0.0}[space]  # 1 - <2v, v>, |2v - v|^2, 1 - cos
    assert abs(found["distances"][0][0] - expected) < 1e-4, found
    del shadow, client
