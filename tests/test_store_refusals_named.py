"""Store refusals that name what they are about: the store, the point, what a stopped migration left, and
the spelling that was meant; and a refusal that writes nothing, not even a probe, into the source."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from store_fixtures import cli, fct_upgrade, fill_source, one_line

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def upgrade(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return fct_upgrade(tmp_path_factory.mktemp("store-named"))


def _parquet(folder: Path, vectors: np.ndarray, labels: list[str]) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    flat = pa.array(vectors.astype(np.float32).ravel())
    pq.write_table(pa.table({"id": pa.array(range(len(vectors)), pa.int64()),
                             "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]),
                             "label": labels}), folder / "part-0.parquet")
    return f"parquet://{folder}"


def test_a_target_that_is_the_source_is_refused_before_anything_is_written_in_its_folder(
        upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The write check probed the source's folder (a temporary file made and removed) before the refusal."""
    case = fill_source("parquet", tmp_path, list(range(40)), upgrade["vectors"]["v1"][:40], upgrade["labels"][:40])
    folder = Path(case.source.removeprefix("parquet://"))
    (folder.parent / "docs_live").symlink_to(folder.name)  # an alias link to the source
    before = (folder.stat().st_mtime_ns, sorted(p.name for p in folder.iterdir()))
    for target in (case.source, case.source + "/", f"parquet://{folder.parent}/docs_live"):
        code, _, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", case.source, "--to", target)
        one_line(code, err, "--to", "is the source collection itself")
        assert (folder.stat().st_mtime_ns, sorted(p.name for p in folder.iterdir())) == before, target


def test_a_refusal_after_some_batches_says_what_the_shadow_holds_and_check_weighs_it_as_unfinished(
        upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A NaN in the third batch: the error named the point only, though the target held 200 of 300 points;
    and `check` then gave the half-written shadow's points as 100% of the store's."""
    v1 = upgrade["vectors"]["v1"]
    rows = np.concatenate([v1] * (300 // len(v1) + 1))[:300].copy()
    labels = (upgrade["labels"] * (300 // len(v1) + 1))[:300]
    rows[250, 2] = np.nan
    source = _parquet(tmp_path / "pq" / "nan_src", rows, labels)
    target = f"parquet://{tmp_path / 'pq' / 'shadow'}"
    code, _, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", source, "--to", target,
                       "--batch", "100")
    one_line(code, err, "point 250", "now holds 200 of the 300 points of this unfinished migration",
             "run the same migration again")
    code, out, err = cli(capsys, "check", "--uri", target)
    assert code == 0 and out["count"] == 200 and out["state"] == "half-migrated", (out, err)
    version = next(iter(out["versions"]))
    code, out, err = cli(capsys, "check", "--uri", target, "--label-field", "label", "--served-as", version)
    assert code == 0, err
    assert out["quality"]["gallery"] == 300 and out["quality"]["reachable_share"] == pytest.approx(200 / 300)


def test_unmarked_points_are_named_unmarked_for_the_quality_measure(upgrade: dict, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    source = _parquet(tmp_path / "pq" / "plain", upgrade["vectors"]["v1"], upgrade["labels"])
    code, out, err = cli(capsys, "check", "--uri", source, "--label-field", "label", "--served-as", "unmarked")
    assert code == 0, err
    assert out["quality"]["served_as"] == "(unmarked)" and out["quality"]["reachable_share"] == 1.0
    assert 0.0 < out["quality"]["top1_label_agreement"] <= 1.0


def test_a_payload_field_of_mixed_types_names_the_target_and_a_point(upgrade: dict, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from qdrant_client import QdrantClient, models

    v1 = upgrade["vectors"]["v1"][:6]
    client = QdrantClient(path=str(tmp_path / "qdrant"))
    client.create_collection("odd", vectors_config=models.VectorParams(size=v1.shape[1],
                                                                       distance=models.Distance.COSINE))
    client.upsert("odd", points=models.Batch(ids=list(range(1, 7)), vectors=v1.tolist(),
                                             payloads=[{"x": v} for v in (1, 2, "text", 1.5, None, [1, 2])]))
    client.close()
    target = f"parquet://{tmp_path / 'pq' / 'odd'}"
    code, _, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from",
                       f"qdrant://{tmp_path / 'qdrant'}?collection=odd", "--to", target)
    one_line(code, err, target, "payload field 'x'", "point 3 holds a str where point 1 holds an int")


def test_a_faiss_path_that_is_missing_or_a_folder_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "check", "--uri", f"faiss://{tmp_path / 'nope.faiss'}")
    one_line(code, err, "no such FAISS index file")
    code, _, err = cli(capsys, "check", "--uri", f"faiss://{tmp_path}")
    one_line(code, err, "is a folder, not a FAISS index file")


def test_two_slashes_before_a_relative_path_suggest_it_under_the_working_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "stores" / "pq").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, "check", "--uri", "parquet://stores/pq/docs")
    one_line(code, err, "names the host 'stores'", f"write parquet://{tmp_path}/stores/pq/docs")
    assert "/stores/pq/docs (three slashes)" not in err  # /stores does not exist: not what was meant


@pytest.mark.skipif(shutil.which("setpriv") is None and os.geteuid() == 0, reason="root reads any folder")
def test_a_read_only_chroma_store_is_one_line(upgrade: dict, tmp_path: Path) -> None:
    """chromadb could not open its database in a read-only folder: exit 3, naming no URI."""
    case = fill_source("chroma", tmp_path, list(range(20)), upgrade["vectors"]["v1"][:20], upgrade["labels"][:20])
    for path in [tmp_path / "chroma", *(tmp_path / "chroma").rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)
    drop = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"] if os.geteuid() == 0 else []
    try:
        out = subprocess.run([*drop, sys.executable, "-m", "embridge.core.cli.main", "check", "--uri", case.source],
                             capture_output=True, text=True, timeout=300, cwd=ROOT)
    finally:
        for path in [tmp_path / "chroma", *(tmp_path / "chroma").rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
    assert out.returncode == 1, (out.returncode, out.stderr)
    assert out.stderr.startswith(f"embridge: error: {case.source}: cannot open the Chroma store"), out.stderr
