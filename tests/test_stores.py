"""Round trips through real vector stores: import, migrate, switch, check, rollback, and kill -9.

Each store is the real thing: embedded Qdrant, LanceDB and Chroma, Parquet files, and a PostgreSQL
server with pgvector. The bundle is a real exported forward (fct) layer; migrated vectors are
compared with the bundle applied to the source, point by point.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from store_fixtures import STORES, cli, fct_upgrade, fill_source, fresh_pg_database, read_all, unit

from embridge.core.bundle import load_bundle
from embridge.core.store import Workspace

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def upgrade(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The bundle workspace's gallery (v1 vectors, labels) and its fct bundle, exported once."""
    return fct_upgrade(tmp_path_factory.mktemp("stores"))


def top1_agreement(vectors: np.ndarray, labels: list[str]) -> float:
    x = unit(np.asarray(vectors, np.float32))
    scores = x @ x.T
    np.fill_diagonal(scores, -np.inf)
    lab = np.asarray(labels)
    return float((lab[np.argmax(scores, axis=1)] == lab).mean())


def make_case(kind: str, tmp_path: Path, ids: list[int], vectors: np.ndarray, labels: list[str],
              pg_server: str | None, db: str) -> Any:
    base = fresh_pg_database(pg_server, db) if kind == "pgvector" else None
    return fill_source(kind, tmp_path, ids, vectors, labels, pg_base=base)


@pytest.mark.slow
@pytest.mark.parametrize("kind", STORES)
def test_round_trip_import_migrate_switch_check_rollback(kind: str, upgrade: dict, tmp_path: Path, request,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    pg = request.getfixturevalue("pg_server") if kind == "pgvector" else None
    v1, labels = upgrade["vectors"]["v1"], upgrade["labels"]
    ids = [int(i) + 1000 for i in range(len(v1))]
    case = make_case(kind, tmp_path, ids, v1, labels, pg, "roundtrip")

    # import: items with labels and texts, and the old model's vectors, into a fresh workspace
    ws_path = tmp_path / "ws"
    assert cli(capsys, "init", "--workspace", str(ws_path))[0] == 0
    code, imported, err = cli(capsys, "import", "--workspace", str(ws_path), "--from", case.source,
                              "--model", "old-store", "--label-field", "label", "--text-field", "body")
    assert code == 0, err
    assert imported["count"] == imported["new_items"] == len(ids) and imported["dim"] == 16
    assert "import:" in err  # progress on stderr
    with Workspace.open(ws_path) as ws:
        items = {r["key"]: r for r in ws.items()}
        stored = ws.vectors_for("old-store", ws.ids_for_keys([str(i) for i in ids]))
    assert items[str(ids[5])]["label"] == labels[5] and items[str(ids[5])]["text"] == f"text of point {ids[5]}"
    cos = unit if kind == "qdrant" else (lambda x: x)  # Qdrant's cosine collections may return unit vectors
    np.testing.assert_allclose(cos(stored), cos(v1), rtol=1e-5, atol=1e-6)
    code, again, err = cli(capsys, "import", "--workspace", str(ws_path), "--from", case.source, "--model", "old-store")
    assert code == 0 and again["new_items"] == 0 and again["vector_set"] == imported["vector_set"]  # idempotent

    # migrate with switch: every point once, the bundle's transform, its space recorded
    switch = [] if kind == "chroma" else ["--switch", "--alias", "docs"]
    code, result, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", case.source,
                            "--to", case.target, "--batch", "50", *switch)
    assert code == 0, err
    assert result["status"] == "completed" and result["written"] == len(ids) and result["verification"]["ok"]
    assert result["switched"] is (kind != "chroma") and result["previous"] is None
    bundle = load_bundle(upgrade["bundle"])
    want = bundle(v1, normalise_output=True)
    got = read_all(case.target)
    assert sorted(got) == sorted(str(i) for i in ids)
    spaces = {p["embridge_space"] for _, p in got.values()}
    assert spaces == {result["spaces"]["adapted"]} and result["spaces"]["adapted"].startswith("v3@bundle:")
    written = np.stack([got[str(i)][0] for i in ids])
    np.testing.assert_allclose(cos(written), cos(want), rtol=1e-4, atol=1e-5)
    assert all(got[str(i)][1]["label"] == labels[n] for n, i in enumerate(ids))  # payload carried over
    source_after = read_all(case.source)  # the source is untouched
    assert all("embridge_space" not in p for _, p in source_after.values()) and len(source_after) == len(ids)

    # check on what the alias serves: one space, and a quality number that matches an independent one
    served = case.target if kind == "chroma" else case.alias_uri
    code, checked, err = cli(capsys, "check", "--uri", served, "--label-field", "label", "--sample", "100000")
    assert code == 0, err
    assert checked["state"] == "single" and checked["count"] == len(ids) and checked["versions"] == {"v3": len(ids)}
    if kind != "chroma":
        assert checked["serves"] == "docs_v2"
    assert checked["quality"]["top1_label_agreement"] == pytest.approx(top1_agreement(want, labels), abs=1e-9)
    assert checked["quality"]["top1_label_agreement"] > 1 / 6 + 0.2  # well above chance on 6 classes

    # a finished migration run again changes nothing
    code, rerun, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", case.source,
                           "--to", case.target, "--batch", "50", *switch)
    assert code == 0 and rerun["status"] == "already complete" and rerun["written"] == 0
    if switch:  # the alias stays where the first run moved it, and says so
        assert rerun["previous"] == "docs_v2" and "alias 'docs' already serves 'docs_v2'" in rerun["text"]
    assert len(read_all(case.target)) == len(ids)

    # rollback: the alias serves the source again
    code, back, err = cli(capsys, "rollback", "--to", case.rollback)
    if kind == "chroma":
        assert code == 1 and "Chroma has no aliases" in err and err.count("\n") == 1
        return
    assert code == 0 and back["changed"] and back["previous"] == "docs_v2", err
    # the migration took the source's unmarked points as the bundle's old model: queries need it again
    assert back["serves"] == {result["spaces"]["old"]: len(ids)} and result["spaces"]["old"] == "v1"
    assert "queries must be embedded by v1 again" in back["text"]
    code, again, err = cli(capsys, "rollback", "--to", case.rollback)  # a second one reads the spaces alike
    assert code == 0 and not again["changed"] and again["serves"] == back["serves"], err
    assert "already serves" in again["text"] and "queries must be embedded by v1 again" in again["text"]
    code, checked, err = cli(capsys, "check", "--uri", case.alias_uri)  # check reads them as rollback does
    assert code == 0 and checked["serves"] == "docs_v1" and checked["state"] == "single", err
    assert checked["versions"] == back["serves"] and checked["spaces"] == {"": len(ids)}


@pytest.mark.slow
@pytest.mark.parametrize("kind", STORES)
def test_kill_9_mid_migration_resumes_and_writes_every_point_once(kind: str, upgrade: dict, tmp_path: Path,
                                                                  request) -> None:
    pg = request.getfixturevalue("pg_server") if kind == "pgvector" else None
    n = 2000  # 200 batches: the kill lands mid-way even when a poll comes late on a loaded machine
    rng = np.random.default_rng(7)
    old = rng.standard_normal((n, 16)).astype(np.float32)
    ids = list(range(1, n + 1))
    case = make_case(kind, tmp_path, ids, old, [str(i % 6) for i in ids], pg, "killed")
    args = [sys.executable, "-m", "embridge.core.cli.main", "migrate", "--bundle", str(upgrade["bundle"]), "--from",
            case.source, "--to", case.target, "--batch", "10", "--json"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    written = 0
    while time.monotonic() < deadline and proc.poll() is None:
        written = _checkpoint_written(kind, case, tmp_path)
        if written >= 100:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the migration finished before it could be killed"
    at_kill = _checkpoint_written(kind, case, tmp_path)
    assert 100 <= at_kill < n

    # another process (as an operator would; Chroma's client caches what its own process saw)
    checked = subprocess.run([sys.executable, "-m", "embridge.core.cli.main", "check", "--uri", case.target, "--json"],
                             cwd=REPO, capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stderr
    state = json.loads(checked.stdout)
    assert state["state"] == "half-migrated" and state["migration"] == {"status": "running", "written": at_kill,
                                                                       "total": n, "source_changed": False}
    assert at_kill <= state["count"] <= at_kill + 10  # the batch in flight may have landed in part

    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "completed" and result["resumed_from"] == at_kill
    assert result["written"] == n - at_kill and result["verification"]["target_count"] == n
    got = read_all(case.target)  # fails on any id stored twice
    assert sorted(got, key=int) == [str(i) for i in ids]
    want = load_bundle(upgrade["bundle"])(old, normalise_output=True)
    written_vectors = np.stack([got[str(i)][0] for i in ids])
    if kind == "qdrant":  # cosine collections may return unit vectors
        written_vectors, want = unit(written_vectors), unit(want)
    np.testing.assert_allclose(written_vectors, want, rtol=1e-4, atol=1e-5)


def _checkpoint_written(kind: str, case: Any, tmp_path: Path) -> int:
    """How many points the running migration has recorded as written (read without opening the store)."""
    if kind == "pgvector":
        import psycopg

        base = case.base
        with psycopg.connect(base, autocommit=True) as conn:
            if not conn.execute("select to_regclass('embridge_state')").fetchone()[0]:
                return 0
            row = conn.execute("select state from embridge_state where key = 'migrate-docs_v2'").fetchone()
        return int(row[0]["written"]) if row else 0
    folder = {"parquet": tmp_path / "pq", "lancedb": tmp_path / "lance", "qdrant": tmp_path / "qdrant",
              "chroma": tmp_path / "chroma"}[kind]
    file = folder.with_name(folder.name + ".embridge") / f"{'lancedb-' if kind == 'lancedb' else ''}migrate-docs_v2.json"
    try:
        return int(json.loads(file.read_text())["written"])
    except (FileNotFoundError, ValueError, KeyError):
        return 0


@pytest.mark.parametrize("kind", ["parquet", "qdrant"])
def test_an_unfinished_migration_is_never_served_nor_called_single(kind: str, upgrade: dict, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """check names a collection a migration is still writing half-migrated, also through the alias
    serving it or when its checkpoint cannot be read; rollback refuses to point the alias at it."""
    from embridge.core.connectors import open_store

    v1, labels = upgrade["vectors"]["v1"], upgrade["labels"]
    case = make_case(kind, tmp_path, [int(i) + 1 for i in range(len(v1))], v1, labels, None, "unfinished")
    code, _, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", case.source, "--to",
                       case.target, "--batch", "50", "--switch", "--alias", "docs")
    assert code == 0, err
    store = open_store(case.target, "--to")
    try:  # as a migration killed halfway leaves its checkpoint
        state = store.load_state("migrate-docs_v2")
        store.save_state("migrate-docs_v2", {**state, "status": "running", "written": 50})
        state_file = store._state_file("migrate-docs_v2")
    finally:
        store.close()
    code, checked, _ = cli(capsys, "check", "--uri", case.alias_uri)  # the alias serves the shadow
    assert code == 0 and checked["serves"] == "docs_v2" and checked["state"] == "half-migrated"
    ws = tmp_path / "ws"
    assert cli(capsys, "init", "--workspace", str(ws))[0] == 0
    for uri in (case.target, case.alias_uri):  # a gallery half written is not imported, by name or alias
        code, _, err = cli(capsys, "import", "--from", uri, "--workspace", str(ws))
        assert code == 1 and "an unfinished migration (running, or stopped) has written part of it (50 of" in err, err
        assert err.count("docs_v2") == 1, err  # the collection named once, by its path or by name
    with Workspace.open(ws) as opened:
        assert opened.items() == [] and opened.models() == []
    onward = case.target.replace("docs_v2", "docs_v3")
    for uri in (case.target, case.alias_uri):  # nor migrated onward, where --switch would serve part of a gallery
        code, _, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", uri, "--to", onward,
                           "--switch", "--alias", "docs")
        assert code == 1 and "an unfinished migration (running, or stopped) has written part of it (50 of" in err, err
        assert err.count("docs_v2") == 1 and err.rstrip().endswith("; nothing was written") and len(err.strip().splitlines()) == 1
    with open_store(onward, "--to") as written:
        assert not written.exists()
    assert cli(capsys, "rollback", "--to", case.rollback)[0] == 0  # back to the source: always allowed
    rollback_to_shadow = case.target + ("&" if "?" in case.target else "?") + "alias=docs"
    code, _, err = cli(capsys, "rollback", "--to", rollback_to_shadow)
    assert code == 1 and "an unfinished migration (running, or stopped) has written part of it (50 of" in err and "the alias was not moved" in err
    code, checked, _ = cli(capsys, "check", "--uri", case.alias_uri)
    assert code == 0 and checked["serves"] != "docs_v2"  # the refused rollback moved nothing
    state_file.write_text(state_file.read_text()[:20])
    code, checked, _ = cli(capsys, "check", "--uri", case.target)
    assert code == 0 and checked["state"] == "half-migrated"
    assert any("cannot be read" in note for note in checked["notes"])


@pytest.mark.parametrize("kind", ["parquet", "lancedb", "qdrant"])
def test_a_collection_a_migration_is_still_writing_is_no_migration_source(kind: str, upgrade: dict, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Its points passed the space check (unmarked, as the bundle's old model's): the migration copied the part
    written so far and --switch served it as a complete gallery."""
    from embridge.core.connectors import open_store

    v1, labels = upgrade["vectors"]["v1"], upgrade["labels"]
    half = fill_source(kind, tmp_path, list(range(50)), v1[:50], labels[:50], name="docs_half")
    with open_store(half.source) as store:  # as a migration into it, killed part-way, leaves its checkpoint
        store.save_state("migrate-docs_half", {"status": "running", "written": 50, "cursor": None,
                                               "fingerprint": {"source_count": len(v1)}})
    onward = half.source.replace("docs_half", "docs_next")
    code, _, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", half.source, "--to", onward,
                       "--switch", "--alias", "docs")
    assert code == 1 and f"has written part of it (50 of {len(v1)} points)" in err and \
        err.rstrip().endswith("nothing was written"), err
    with open_store(onward) as written:
        assert not written.exists()


def test_a_half_written_parquet_shadow_is_named_through_linked_folders(upgrade: dict, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Its checkpoint is found from the real folder, whichever link reaches it: import refuses it, check names it."""
    from embridge.core.connectors import open_store

    v1, labels = upgrade["vectors"]["v1"], upgrade["labels"]
    case = make_case("parquet", tmp_path, [int(i) + 1 for i in range(len(v1))], v1, labels, None, "links")
    assert cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", case.source, "--to", case.target,
               "--batch", "50")[0] == 0
    with open_store(case.target) as store:  # as a migration killed halfway leaves its checkpoint
        store.save_state("migrate-docs_v2", {**store.load_state("migrate-docs_v2"), "status": "running",
                                             "written": 50})
    (tmp_path / "linked").symlink_to(tmp_path / "pq")  # a linked parent folder
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "shadow").symlink_to(tmp_path / "pq" / "docs_v2")  # a link from another folder
    ws = tmp_path / "ws"
    assert cli(capsys, "init", "--workspace", str(ws))[0] == 0
    for uri in (f"parquet://{tmp_path / 'linked' / 'docs_v2'}", f"parquet://{tmp_path / 'elsewhere' / 'shadow'}"):
        code, _, err = cli(capsys, "import", "--from", uri, "--workspace", str(ws))
        assert code == 1 and "an unfinished migration (running, or stopped) has written part of it (50 of" in err, (uri, err)
        code, checked, _ = cli(capsys, "check", "--uri", uri)
        assert code == 0 and checked["state"] == "half-migrated", (uri, checked)
    with Workspace.open(ws) as opened:
        assert opened.items() == []
