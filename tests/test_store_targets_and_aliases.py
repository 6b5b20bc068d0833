"""Store targets and aliases: a --to that is a link to nothing (an alias whose collection was dropped) is
refused naming --to before anything is written; check and rollback refuse columns a collection lacks; check
through an alias reads unmarked points as rollback does."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from store_fixtures import cli, fct_upgrade, fill_source, fresh_pg_database, one_line

from embridge.core.connectors import StoreURI


@pytest.fixture(scope="module")
def upgrade(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return fct_upgrade(tmp_path_factory.mktemp("dangling-links"))


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("kind", ["parquet", "lancedb"])
def test_migrating_into_an_alias_whose_collection_was_dropped_is_refused(
        kind: str, upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    v1 = upgrade["vectors"]["v1"][:40]
    case = fill_source(kind, tmp_path, list(range(len(v1))), v1, upgrade["labels"][:40])
    bundle = str(upgrade["bundle"])
    code, out, err = cli(capsys, "migrate", "--bundle", bundle, "--from", case.source, "--to", case.target,
                         "--switch", "--alias", "docs")
    assert code == 0 and out["written"] == 40, err
    shadow = StoreURI.parse(case.target)
    dropped = Path(shadow.path) if kind == "parquet" else Path(shadow.path) / "docs_v2.lance"
    shutil.rmtree(dropped)  # the alias 'docs' now names nothing
    before = _files(tmp_path)
    code, _, err = cli(capsys, "migrate", "--bundle", bundle, "--from", case.source, "--to", case.alias_uri)
    one_line(code, err, "--to: ", "which does not exist (an alias whose collection was dropped?)")
    assert _files(tmp_path) == before  # no checkpoint, no folder: nothing written


def test_a_store_folder_linked_to_nothing_is_refused(upgrade: dict, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    v1 = upgrade["vectors"]["v1"][:20]
    case = fill_source("parquet", tmp_path, list(range(len(v1))), v1, upgrade["labels"][:20])
    os.symlink(tmp_path / "removed", tmp_path / "qdrant-link")
    before = _files(tmp_path)
    for target in (f"qdrant:///{tmp_path}/qdrant-link?collection=docs", f"parquet:///{tmp_path}/qdrant-link/docs"):
        code, _, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", case.source,
                           "--to", target)
        one_line(code, err, "--to: ", f"qdrant-link is a link to '{tmp_path}/removed', which does not exist")
    assert _files(tmp_path) == before


@pytest.mark.parametrize("kind", ["parquet", "lancedb"])
@pytest.mark.parametrize(("param", "said"), [("vector=nope", "column 'nope'"),
                                             ("id=nope", "no column 'nope' (columns: ")])
def test_check_and_rollback_refuse_a_column_the_collection_lacks(
        kind: str, param: str, said: str, upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Import and migrate refused such a URI; check counted its points (exit 0) and rollback served it."""
    v1 = upgrade["vectors"]["v1"][:30]
    case = fill_source(kind, tmp_path, list(range(len(v1))), v1, upgrade["labels"][:30])
    code, out, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", case.source, "--to",
                         case.target, "--switch", "--alias", "docs")
    assert code == 0, err
    joined = "&" if "?" in case.source else "?"
    code, _, err = cli(capsys, "check", "--uri", f"{case.source}{joined}{param}")
    one_line(code, err, said)
    before = _files(tmp_path)
    code, _, err = cli(capsys, "rollback", "--to", f"{case.source}{joined}{param}", "--alias", "docs")
    one_line(code, err, said)
    assert _files(tmp_path) == before  # the alias still serves the shadow


def test_check_through_an_alias_moved_back_reads_unmarked_points_as_rollback_does(
        upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """After a rollback to a migration's source, rollback said its points were the old model's and check, on
    the same alias, called them unmarked (or half-migrated beside marked ones)."""
    v1 = upgrade["vectors"]["v1"][:30]
    case = fill_source("parquet", tmp_path, list(range(len(v1))), v1, upgrade["labels"][:30])
    code, out, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", case.source, "--to",
                         case.target, "--switch", "--alias", "docs")
    assert code == 0, err
    code, back, err = cli(capsys, "rollback", "--to", case.rollback)
    assert code == 0 and len(back["serves"]) == 1, err
    (version, count), = back["serves"].items()
    code, checked, err = cli(capsys, "check", "--uri", case.alias_uri)
    assert code == 0, err
    assert checked["versions"] == {version: count} == {version: 30} and checked["state"] == "single"
    assert checked["spaces"] == {"": 30}  # as stored: no marker
    assert f"its 30 unmarked points are read as {version}'s" in " ".join(checked["notes"])
    code, direct, err = cli(capsys, "check", "--uri", case.source)  # not through the alias: no move to read
    assert code == 0 and direct["state"] == "unmarked"
    # their quality, measured through the alias, is that of the same points named directly (it found none)
    code, measured, err = cli(capsys, "check", "--uri", case.alias_uri, "--label-field", "label")
    assert code == 0, err
    code, named, err = cli(capsys, "check", "--uri", case.source, "--label-field", "label")
    assert code == 0, err
    assert measured["quality"]["served_as"] == version and measured["quality"]["points"] == 30
    assert measured["quality"]["top1_label_agreement"] == named["quality"]["top1_label_agreement"]
    code, unmarked, err = cli(capsys, "check", "--uri", case.alias_uri, "--label-field", "label", "--served-as",
                              "unmarked")  # the points no migration wrote, as --served-as says: the same ones
    assert code == 0 and unmarked["quality"] == measured["quality"], err


@pytest.mark.parametrize("kind", ["parquet", "lancedb", "qdrant", "pgvector"])
def test_a_finished_switch_read_through_its_alias_reruns_as_a_verification(
        kind: str, upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        request: pytest.FixtureRequest) -> None:
    """A migration that read its source through the alias it then switched: the same command again was refused as
    writing into its own source (the alias now serves the shadow), and a rollback called the source's points
    unmarked (the checkpoint named the alias, not the collection read)."""
    v1 = upgrade["vectors"]["v1"][:30]
    base = fresh_pg_database(request.getfixturevalue("pg_server"), "rerun_alias") if kind == "pgvector" else None
    case = fill_source(kind, tmp_path, list(range(len(v1))), v1, upgrade["labels"][:30], pg_base=base)
    bundle = str(upgrade["bundle"])
    trial = case.target.replace("docs_v2", "trial")
    code, _, err = cli(capsys, "migrate", "--bundle", bundle, "--from", case.source, "--to", trial, "--switch",
                       "--alias", "docs")
    assert code == 0, err
    code, _, err = cli(capsys, "rollback", "--to", case.rollback)  # the alias 'docs' serves docs_v1 again
    assert code == 0, err
    again = ("migrate", "--bundle", bundle, "--from", case.alias_uri, "--to", case.target, "--switch", "--alias", "docs")
    code, first, err = cli(capsys, *again)
    assert code == 0 and first["written"] == 30, err
    code, rerun, err = cli(capsys, *again)
    assert code == 0 and (rerun["status"], rerun["written"], rerun["verification"]["ok"]) == ("already complete", 0,
                                                                                               True), err
    assert "alias 'docs' already serves 'docs_v2'" in rerun["text"]
    code, back, err = cli(capsys, "rollback", "--to", case.rollback)
    assert code == 0 and list(back["serves"]) == ["v1"], (back, err)  # not "(unmarked)"


def test_a_switch_onto_the_collection_an_alias_already_serves_records_no_move(tmp_path: Path) -> None:
    """Each rerun of a switched migration recorded a move from the shadow to itself, which hid the
    collection the alias served before: the third run of an alias-sourced migration was refused as the
    source collection itself."""
    from store_fixtures import parquet_dataset

    from embridge.core.connectors import open_store
    from embridge.core.connectors.aliases import switch_alias
    from embridge.core.connectors.check import switched_from

    vectors = np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32)
    for name in ("docs_v1", "docs_v2"):
        parquet_dataset(tmp_path / "pq" / name, vectors)
    with open_store(f"parquet://{tmp_path / 'pq' / 'docs_v1'}") as store:
        assert switch_alias(store, "docs", "docs_v1") is None
        assert switch_alias(store, "docs", "docs_v2") == "docs_v1"
        assert switch_alias(store, "docs", "docs_v2") == "docs_v2"  # already so: nothing moves
        history = store.load_state(store.alias_key("docs"))["history"]
    assert [(move["from"], move["to"]) for move in history] == [(None, "docs_v1"), ("docs_v1", "docs_v2")]
    with open_store(f"parquet://{tmp_path / 'pq' / 'docs_v1'}") as store:  # a self-move an earlier version kept
        store.save_state(store.alias_key("docs"), {"history": [*history, {**history[-1], "from": "docs_v2"}]})
        assert switched_from(store, "docs", "docs_v2") == "docs_v1"
