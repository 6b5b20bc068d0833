"""Store migration options and refusals: partial backfill orders, mixed stores, FAISS, bad input.

Parquet (fast, real files) carries most of these; what they check is the store-independent core.
"""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bundle_fixtures import build_upgrade_workspace
from store_fixtures import cli, fill_source, read_all, unit

from embridge.core.bundle import export_bundle, load_bundle
from embridge.core.cli.main import main
from embridge.core.connectors import Batch, open_store
from embridge.core.connectors.gallery_import import import_from_store
from embridge.core.errors import Cancelled
from embridge.core.store import Workspace


@pytest.fixture(scope="module")
def upgrade(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("store-options")
    up = build_upgrade_workspace(root / "ws", with_report=False)
    with Workspace.open(up["path"]) as ws:
        export_bundle(ws, root / "fct.zip", [up["runs"]["fct"]])
        export_bundle(ws, root / "backward.zip", [up["runs"]["v3_to_v1"]])
        labels = [str(x) for x in ws.labels(up["ids"])]
    return {**up, "bundle": root / "fct.zip", "backward": root / "backward.zip", "labels": labels}


@pytest.fixture
def source(upgrade: dict, tmp_path: Path) -> Any:
    v1 = upgrade["vectors"]["v1"]
    return fill_source("parquet", tmp_path, list(range(len(v1))), v1, upgrade["labels"])


def test_planner_backfill_gives_new_vectors_where_the_bundle_is_worst(upgrade: dict, source: Any, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    v1, v3 = upgrade["vectors"]["v1"], upgrade["vectors"]["v3"]
    new_file = tmp_path / "new.npz"
    np.savez(new_file, ids=np.arange(len(v3)), vectors=v3)
    budget = 60
    results = {}
    for order in ("planner", "random"):
        target = source.target.replace("docs_v2", f"docs_{order}")
        code, out, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", source.source,
                             "--to", target, "--new-vectors", str(new_file), "--backfill", str(budget),
                             "--order", order)
        assert code == 0, err
        got = read_all(target)
        backfilled = sorted(int(k) for k, (_, p) in got.items() if p["embridge_space"] == out["spaces"]["new"])
        assert len(backfilled) == budget and out["backfilled"] == budget
        v = out["verification"]  # the sample is the source's first points: each checked against what it holds
        assert v["sample_new"] == sum(1 for i in backfilled if i < v["sample"]) > 0
        assert f"{v['sample'] - v['sample_new']} against the bundle's transform; {v['sample_new']} against the " \
               "new vectors given" in v["summary"]
        vectors = np.stack([got[str(i)][0] for i in range(len(v1))])
        np.testing.assert_allclose(vectors[backfilled], unit(v3[backfilled]), rtol=1e-6)  # the real new vectors
        rest = np.setdiff1d(np.arange(len(v1)), backfilled)
        np.testing.assert_allclose(vectors[rest], load_bundle(upgrade["bundle"])(v1[rest], normalise_output=True), rtol=1e-4, atol=1e-5)
        results[order] = backfilled
        assert out["warning"] is None  # every chosen id is a source point
        code, checked, err = cli(capsys, "check", "--uri", target)
        assert checked["state"] == "single" and checked["versions"] == {"v3": len(v1)}  # one model version
    residual = np.linalg.norm(unit(load_bundle(upgrade["bundle"])(v1)) - unit(v3), axis=1)
    # the planner takes the largest residuals (up to float ties at the cut, where the store's batched
    # transform and this one-shot transform may round differently); the random subset is far from that
    cut = np.sort(residual)[::-1][budget - 1]
    assert residual[results["planner"]].min() >= cut - 1e-5
    assert len(set(results["planner"]) ^ set(np.argsort(-residual)[:budget].tolist())) <= 2 * int(
        np.sum(np.abs(residual - cut) <= 1e-5))
    top = set(np.argsort(-residual)[:budget].tolist())
    assert residual[results["planner"]].mean() > residual[results["random"]].mean()
    assert len(top & set(results["random"])) < budget // 2


def test_a_mixed_store_is_named_half_migrated_and_quality_needs_the_serving_space(
        upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    v1, labels = upgrade["vectors"]["v1"], upgrade["labels"]
    adapted = load_bundle(upgrade["bundle"])(v1)
    uri = f"parquet://{tmp_path / 'mixed' / 'docs'}"
    store = open_store(uri)
    store.create(16)
    # an application that re-embedded the first 100 points in place, tagging each point's model
    half = 100
    store.write(Batch(list(range(half)), adapted[:half, :16],  # one width per dataset: a 16-d stand-in
                      [{"label": lab, "embridge_space": "v3"} for lab in labels[:half]]))
    store.write(Batch(list(range(half, len(v1))), v1[half:],
                      [{"label": lab, "embridge_space": "v1"} for lab in labels[half:]]))
    code, out, err = cli(capsys, "check", "--uri", uri)
    assert code == 0 and out["state"] == "half-migrated" and out["versions"] == {"v3": half, "v1": len(v1) - half}
    code, out, err = cli(capsys, "check", "--uri", uri, "--label-field", "label")
    assert code == 1 and "half-migrated" in err and "--served-as" in err and err.count("\n") == 1
    code, out, err = cli(capsys, "check", "--uri", uri, "--label-field", "label", "--served-as", "v1",
                         "--sample", "100000")
    assert code == 0, err
    quality = out["quality"]
    assert quality["points"] == len(v1) - half and quality["reachable_share"] == pytest.approx((len(v1) - half) / len(v1))
    x, lab = unit(v1[half:]), np.asarray(labels[half:])
    scores = x @ x.T
    np.fill_diagonal(scores, -np.inf)
    assert quality["top1_label_agreement"] == pytest.approx(float((lab[scores.argmax(1)] == lab).mean()))
    assert quality["queries"] == quality["points"]  # --sample above the count takes every point
    code, out, err = cli(capsys, "check", "--uri", uri, "--label-field", "label", "--served-as", "v1", "--sample", "5")
    assert code == 0 and out["quality"]["queries"] == 5
    assert main(["check", "--uri", uri, "--label-field", "label", "--served-as", "v1", "--sample", "5"]) == 0
    share = f"{(len(v1) - half) / len(v1):.0%}"
    assert (f"for 5 sampled queries among the {len(v1) - half} points that carry 'label' ({share} of the store's "
            "points are v1)") in capsys.readouterr().out


def _imported_exactly(index: Any, path: Path, ids: np.ndarray, vectors: np.ndarray,
                      capsys: pytest.CaptureFixture[str]) -> Path:
    """Write ``index`` to ``path``, import it into a new workspace ``ws`` beside it and check every vector came
    back exactly under its id; returns ``path``."""
    import faiss

    faiss.write_index(index, str(path))
    ws = path.parent / "ws"
    Workspace.create(ws).close()
    code, out, err = cli(capsys, "import", "--workspace", str(ws), "--from", f"faiss://{path}", "--model", "v1")
    assert code == 0 and out["count"] == len(vectors) and out["note"] is None, err
    with Workspace.open(ws) as w:
        np.testing.assert_array_equal(w.vectors_for("v1", w.ids_for_keys([str(i) for i in ids])), vectors)
    return path


def test_faiss_index_is_read_imported_and_migrated_into_parquet(upgrade: dict, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    import faiss

    v1 = np.ascontiguousarray(upgrade["vectors"]["v1"], dtype=np.float32)
    index = faiss.IndexIDMap(faiss.IndexFlatIP(16))
    ids = np.arange(len(v1), dtype=np.int64) * 7 + 3
    index.add_with_ids(v1, ids)
    path = _imported_exactly(index, tmp_path / "gallery.faiss", ids, v1, capsys)  # a flat index gives them back
    target = f"parquet://{tmp_path / 'pq' / 'docs_v3'}"
    code, out, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", f"faiss://{path}",
                         "--to", target)
    assert code == 0 and out["written"] == len(v1), err
    got = read_all(target)
    np.testing.assert_allclose(np.stack([got[str(i)][0] for i in ids]), load_bundle(upgrade["bundle"])(v1, normalise_output=True),
                               rtol=1e-4, atol=1e-5)
    code, out, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", f"faiss://{path}",
                         "--to", f"faiss://{tmp_path / 'out.faiss'}")
    assert code == 1 and "read-only" in err and not (tmp_path / "out.faiss").exists()
    code, out, err = cli(capsys, "check", "--uri", f"faiss://{path}")  # nothing ever migrated into it
    assert code == 0 and out["state"] != "half-migrated" and "checkpoint" not in err + json.dumps(out), out


def test_an_ivf_index_is_read_with_the_ids_it_was_given(upgrade: dict, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """An IVF index keeps the ids of add_with_ids in its inverted lists; they are not 0..n-1, so its
    vectors are found through a hash-table map (an array map refused them: exit 3 with FAISS's text)."""
    import faiss

    v1 = np.ascontiguousarray(upgrade["vectors"]["v1"], dtype=np.float32)
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatL2(16), 16, 4)
    ivf.train(v1)
    ids = np.arange(len(v1), dtype=np.int64)[::-1] * 7 + 100_000
    ivf.add_with_ids(v1, ids)
    path = _imported_exactly(ivf, tmp_path / "ivf.faiss", ids, v1, capsys)
    ws = path.parent / "ws"
    code, out, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", f"faiss://{path}",
                         "--to", f"parquet://{tmp_path / 'pq'}/ivf_v2", "--batch", "7")
    assert code == 0 and out["written"] == len(v1), err
    got = read_all(f"parquet://{tmp_path / 'pq'}/ivf_v2")
    np.testing.assert_allclose(np.stack([got[str(i)][0] for i in ids]),
                               load_bundle(upgrade["bundle"])(v1, normalise_output=True), rtol=1e-4, atol=1e-5)
    repeated = faiss.IndexIVFFlat(faiss.IndexFlatL2(16), 16, 4)  # ids in range, one of them twice
    repeated.train(v1)
    twice = np.arange(len(v1), dtype=np.int64)
    twice[5] = 0
    repeated.add_with_ids(v1, twice)
    faiss.write_index(repeated, str(tmp_path / "twice.faiss"))
    code, out, err = cli(capsys, "check", "--uri", f"faiss://{tmp_path / 'twice.faiss'}")
    code, out, err = cli(capsys, "import", "--workspace", str(ws), "--from", f"faiss://{tmp_path / 'twice.faiss'}",
                         "--model", "v9")
    assert code == 1 and "the id 0 appears more than once" in err and len(err.strip().splitlines()) == 1, err


def test_a_compressed_faiss_index_is_imported_with_a_note_that_its_vectors_are_approximate(
        upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import faiss

    v1 = np.ascontiguousarray(upgrade["vectors"]["v1"], dtype=np.float32)
    index = faiss.IndexScalarQuantizer(16, faiss.ScalarQuantizer.QT_4bit)
    index.train(v1)
    index.add(v1)
    path = tmp_path / "sq.faiss"
    faiss.write_index(index, str(path))
    ws = tmp_path / "ws"
    Workspace.create(ws).close()
    code, out, err = cli(capsys, "import", "--workspace", str(ws), "--from", f"faiss://{path}", "--model", "v1")
    assert code == 0, err
    assert "IndexScalarQuantizer" in out["note"] and "approximate" in out["note"]
    with Workspace.open(ws) as w:  # the note is true: what was stored differs from what was indexed
        stored = w.vectors_for("v1", w.ids_for_keys([str(i) for i in range(len(v1))]))
    assert not np.allclose(stored, v1, atol=1e-4)
    # a migration from it says so too (it said nothing)
    code, out, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", f"faiss://{path}",
                         "--to", f"parquet://{tmp_path / 'pq'}/sq_v2")
    assert code == 0 and "IndexScalarQuantizer" in (out.get("warning") or "") and "approximate" in out["warning"], err


def test_bad_requests_get_one_line_and_change_nothing(upgrade: dict, source: Any, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    before = read_all(source.source)
    b = str(upgrade["bundle"])
    cases = [
        (["migrate", "--bundle", b, "--from", "mongo://x/y", "--to", source.target], "unknown store scheme"),
        (["migrate", "--bundle", b, "--from", source.source, "--to", source.source], "is the source collection"),
        (["migrate", "--bundle", str(upgrade["backward"]), "--from", source.source, "--to", source.target],
         "nothing to migrate"),
        (["migrate", "--bundle", b, "--from", source.source, "--to", source.target, "--switch"], "name the alias"),
        (["migrate", "--bundle", b, "--from", source.source, "--to", source.target, "--order", "planner"],
         "--new-vectors"),
        (["migrate", "--bundle", b, "--from", source.source.replace("docs_v1", "nope"), "--to", source.target],
         "no such collection"),
        (["check", "--uri", "qdrant:///tmp/x"], "no collection named"),
        (["rollback", "--to", source.source], "name the alias"),
    ]
    for args, message in cases:
        code, _, err = cli(capsys, *args)
        assert code in (1, 2) and message in err and err.count("\n") == 1, (args, err)
    assert not Path(source.target.removeprefix("parquet://")).exists()
    assert read_all(source.source).keys() == before.keys()
    # a different migration into an existing shadow is refused, not mixed in
    assert cli(capsys, "migrate", "--bundle", b, "--from", source.source, "--to", source.target)[0] == 0
    code, _, err = cli(capsys, "migrate", "--bundle", b, "--from", source.source, "--to", source.target,
                       "--batch", "7", "--seed", "3", "--new-vectors", str(_new_file(upgrade, tmp_path)))
    assert code == 1 and "holds a different migration" in err


def test_a_checkpoint_outliving_its_collection_starts_afresh_and_one_missing_points_is_refused(
        upgrade: dict, source: Any, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["migrate", "--bundle", str(upgrade["bundle"]), "--from", source.source, "--to", source.target,
            "--batch", "40"]
    assert cli(capsys, *args)[0] == 0
    n = len(upgrade["ids"])
    target = open_store(source.target)
    target.drop()  # the shadow dropped by hand: its checkpoint stays beside the store
    target.close()
    code, out, err = cli(capsys, *args)
    assert code == 0, err
    assert (out["status"], out["written"], out["resumed_from"]) == ("completed", n, 0) and len(read_all(source.target)) == n
    folder = Path(source.target.removeprefix("parquet://"))
    removed = sorted(folder.glob("*.parquet"))[0]
    removed.unlink()  # points the checkpoint counts as written, gone
    held = len(read_all(source.target))
    code, _, err = cli(capsys, *args)
    assert code == 1 and err.count("\n") == 1
    assert f"records {n} points written, but it holds {held}" in err
    assert len(read_all(source.target)) == held  # refused before writing anything


def test_an_all_zero_new_vector_is_refused_before_anything_is_written(upgrade: dict, source: Any, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    v3 = upgrade["vectors"]["v3"].copy()
    v3[3] = 0.0  # every point is written L2-normalised: this one has no direction
    np.savez(tmp_path / "zero.npz", ids=np.arange(len(v3)), vectors=v3)
    code, _, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", source.source, "--to",
                       source.target, "--new-vectors", str(tmp_path / "zero.npz"), "--backfill", "10")
    assert code == 1 and "the new-model vector of id '3' is all zeros (1 such vectors)" in err, err
    from embridge.core.connectors import open_store

    with open_store(source.target) as target:
        assert not target.exists()


def _new_file(upgrade: dict, tmp_path: Path) -> Path:
    file = tmp_path / "new.npz"
    np.savez(file, ids=np.arange(len(upgrade["vectors"]["v3"])), vectors=upgrade["vectors"]["v3"])
    return file


def test_a_cancelled_import_resumes_without_duplicates(upgrade: dict, source: Any, tmp_path: Path) -> None:
    ws_path = tmp_path / "ws"
    calls = {"n": 0}

    def stop_after_some() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    with Workspace.create(ws_path) as ws:
        with pytest.raises(Cancelled):
            import_from_store(ws, source.source, "v1", "label", batch_size=40, should_stop=stop_after_some)
        partial = len(ws.item_ids())
        assert 0 < partial < len(upgrade["ids"])
        seen: list[tuple[int, int, str]] = []
        out = import_from_store(ws, source.source, "v1", "label", batch_size=40,
                                on_progress=lambda d, t, i: seen.append((d, t, i["stage"])))
        assert out.count == len(upgrade["ids"]) and out.new_items == len(upgrade["ids"]) - partial
        assert len(ws.item_ids()) == len(upgrade["ids"]) and seen[-1][0] == seen[-1][1]
        n = len(upgrade["ids"])  # each pass (items, then vectors) counts the points once, never 2n
        assert {t for _, t, _ in seen} == {n} and [d for d, _, s in seen if d == n] and seen[-1][2] == "vectors"
        keys = [str(i) for i in range(len(upgrade["ids"]))]
        np.testing.assert_allclose(ws.vectors_for("v1", ws.ids_for_keys(keys)), upgrade["vectors"]["v1"])
        assert ws.labels(ws.ids_for_keys(keys)) == upgrade["labels"]


def test_embedding_with_a_model_imported_from_a_store_is_refused_before_a_run(
        upgrade: dict, source: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Its vectors came with the points: no model file to embed with, so one line naming --model, no run."""
    ws_path = tmp_path / "ws"
    with Workspace.create(ws_path) as ws:
        import_from_store(ws, source.source, "v1", "label", batch_size=40)
        runs = len(ws.runs())
    code, _, err = cli(capsys, "embed", "-w", str(ws_path), "--model", "v1")
    assert code == 1 and err.count("\n") == 1 and err.startswith("embridge: error: --model: 'v1' holds the vectors "
                                                                  f"imported from {source.source}"), err
    with Workspace.open(ws_path) as ws:
        assert len(ws.runs()) == runs


@pytest.mark.parametrize("order", ["random", "planner"])
def test_new_vectors_whose_ids_name_no_point_are_said_so(upgrade: dict, source: Any, tmp_path: Path, order: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Ids that are not the source's (here names where the source has numbers 0..) attach nothing: the
    migration still completes, and says first how many points got real vectors of how many asked for,
    in either order."""
    v3 = upgrade["vectors"]["v3"]
    new_file = tmp_path / "other-ids.npz"
    half = len(v3) // 2  # numbered ids for the first half, names no point has for the rest
    np.savez(new_file, ids=np.array([str(i) for i in range(half)] + [f"doc-{i}" for i in range(half, len(v3))]),
             vectors=v3)
    code, out, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", source.source,
                         "--to", source.target, "--new-vectors", str(new_file), "--order", order)
    assert code == 0 and out["verification"]["ok"], err
    attached = out["verification"]["spaces"].get(out["spaces"]["new"], 0)
    assert attached == half  # the numbered half, whatever the order
    assert out["warning"].startswith(f"WARNING: {half} points got real new vectors where {len(v3)} were asked for "
                                     f"(all {len(v3)} ids of --new-vectors)")
    assert out["text"].splitlines()[0] == out["warning"]
    code, out, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", source.source,
                         "--to", source.target.replace("docs_v2", "docs_enough"), "--new-vectors", str(new_file),
                         "--order", order, "--backfill", "20", "--seed", "1")
    got = out["verification"]["spaces"].get(out["spaces"]["new"], 0)
    assert code == 0 and (out["warning"] is None) == (got == 20), (got, out["warning"])  # warned only when short
    if order == "planner":  # it chooses among source points: the 20 asked for are there
        assert got == 20 and out["warning"] is None
    none_file = tmp_path / "no-ids.npz"
    np.savez(none_file, ids=np.array([f"doc-{i}" for i in range(len(v3))]), vectors=v3)
    code, out, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", source.source,
                         "--to", source.target.replace("docs_v2", "docs_none"), "--new-vectors", str(none_file),
                         "--order", order, "--backfill", "50")
    assert code == 0 and out["warning"].startswith("WARNING: 0 points got real new vectors where 50 were asked "
                                                   "for (--backfill 50)"), err


@pytest.mark.parametrize("kind", ["lancedb", "qdrant"])
def test_a_target_in_the_source_store_takes_its_own_uri_parameters(kind: str, upgrade: dict, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A target in the same embedded store as the source shares its client: a typo among its parameters
    was accepted and its ?id= / ?vector= ignored (the shadow took the source's column and vector names)."""
    v1 = upgrade["vectors"]["v1"][:60]
    case = fill_source(kind, tmp_path, list(range(len(v1))), v1, upgrade["labels"][:60])
    base, key = case.base, "table" if kind == "lancedb" else "collection"
    code, out, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", case.source,
                         "--to", f"{base}?{key}=typo&bogus=7")
    assert code == 1 and "gives the parameter 'bogus', which" in err and err.count("\n") == 1, err
    named = f"{base}?{key}=named&id=pk&vector=embedding" if kind == "lancedb" else f"{base}?{key}=named&vector=dense"
    code, out, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", case.source, "--to", named)
    assert code == 0, err
    if kind == "lancedb":
        import lancedb

        assert lancedb.connect(str(tmp_path / "lance")).open_table("named").schema.names[:2] == ["pk", "embedding"]
    else:
        from qdrant_client import QdrantClient

        client = QdrantClient(path=str(tmp_path / "qdrant"))
        try:
            assert list(client.get_collection("named").config.params.vectors) == ["dense"]
        finally:
            client.close()


def _under_file_size_limit(limit: int, *args: str) -> subprocess.CompletedProcess:
    """``embridge ARGS`` in a process whose files may not grow past ``limit`` bytes (the kernel's EFBIG,
    as a full disk's ENOSPC, reaches the writer: SIGXFSZ is ignored)."""
    def cap() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([sys.executable, "-m", "embridge.core.cli.main", *args], preexec_fn=cap,
                          capture_output=True, text=True, timeout=300)


def test_writers_that_name_no_file_are_named_by_their_target(upgrade: dict, source: Any, tmp_path: Path) -> None:
    """Lance's writer raised a RuntimeError naming its Rust source file (exit 3, "unexpected"), and the
    Parquet and Lance dataset writers an OSError without a file name ("a file: ...")."""
    b = str(upgrade["bundle"])
    got = _under_file_size_limit(4096, "migrate", "--bundle", b, "--from", source.source,
                                 "--to", f"lancedb://{tmp_path / 'db'}?table=m")
    lines = [line for line in got.stderr.splitlines() if line.startswith("embridge:")]
    assert got.returncode == 1 and len(lines) == 1, got.stderr
    assert "table 'm': cannot write (File too large)" in lines[0] and ".rs:" not in lines[0]
    for target in (f"parquet://{tmp_path / 'out'}", f"lance://{tmp_path / 'out.lance'}"):
        got = _under_file_size_limit(2048, "transform", "--bundle", b, "--from", source.source, "--to", target)
        lines = [line for line in got.stderr.splitlines() if line.startswith("embridge:")]
        assert got.returncode == 1 and len(lines) == 1, got.stderr
        assert lines[0].startswith(f"embridge: error: --to {target}: ") and "File too large" in lines[0], lines
