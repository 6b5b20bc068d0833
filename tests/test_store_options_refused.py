"""Store-command options that are wrong, conflicting or would do nothing: one line naming the option or
file, exit status 1, and every stored byte as it was; an option is never silently ignored.

Real embedded stores (Parquet folders, Qdrant's local mode) and the real command line throughout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.workspace_files import tree_snapshot
from store_fixtures import cli, fct_upgrade, fill_source

from embridge.core.connectors.migration import migrate_store
from embridge.core.errors import InputError


@pytest.fixture(scope="module")
def upgrade(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return fct_upgrade(tmp_path_factory.mktemp("store-options-refused"))


@pytest.fixture
def source(upgrade: dict, tmp_path: Path) -> Any:
    v1 = upgrade["vectors"]["v1"]
    return fill_source("parquet", tmp_path, list(range(len(v1))), v1, upgrade["labels"])


def refused(code: int, err: str, *needles: str, status: int = 1) -> None:
    """Exit ``status`` (2: options that do not go together) with a single error line holding every needle."""
    assert code == status and err.count("\n") == 1 and err.startswith("embridge: error: "), (code, err)
    for needle in needles:
        assert needle in err, (needle, err)


def migrate(capsys: pytest.CaptureFixture[str], upgrade: dict, source: str, target: str,
            *more: str) -> tuple[int, Any, str]:
    return cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", source, "--to", target, *more)


def test_a_plain_npy_as_new_vectors_is_one_line_naming_the_option_and_file(
        upgrade: dict, source: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    npy = tmp_path / "new.npy"
    np.save(npy, upgrade["vectors"]["v3"])
    before = tree_snapshot(tmp_path)
    code, _, err = migrate(capsys, upgrade, source.source, source.target, "--new-vectors", str(npy), "--backfill", "20")
    refused(code, err, str(npy), "--new-vectors needs an .npz with arrays 'ids' and 'vectors'", "plain .npy")
    assert tree_snapshot(tmp_path) == before  # no shadow, no checkpoint, the source as it was


def test_text_new_vectors_are_refused_as_bundle_apply_refuses_them(
        upgrade: dict, source: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    v3 = upgrade["vectors"]["v3"]
    text = tmp_path / "text.npz"
    np.savez(text, ids=np.arange(len(v3)), vectors=v3.astype(str))  # numbers written as text: '<U32'
    before = tree_snapshot(tmp_path)
    code, _, err = migrate(capsys, upgrade, source.source, source.target, "--new-vectors", str(text), "--backfill", "20")
    refused(code, err, str(text), "--new-vectors", f"vectors must be floats or integers, got {v3.astype(str).dtype}")
    assert tree_snapshot(tmp_path) == before


@pytest.mark.parametrize("ids", ["column", "floats"])
def test_new_vector_ids_that_are_not_one_row_of_ids_are_refused(
        ids: str, upgrade: dict, source: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Ids of shape (n, 1) became the text '[7]', matched no point, and the migration ended with exit 0."""
    v3 = upgrade["vectors"]["v3"]
    given = np.arange(len(v3)).reshape(-1, 1) if ids == "column" else np.arange(len(v3)) + 0.5
    bad = tmp_path / "bad-ids.npz"
    np.savez(bad, ids=given, vectors=v3)
    before = tree_snapshot(tmp_path)
    code, _, err = migrate(capsys, upgrade, source.source, source.target, "--new-vectors", str(bad), "--backfill", "20")
    refused(code, err, str(bad), "--new-vectors: 'ids' must be one row of integers or text",
            f"got {given.dtype} of shape {given.shape}")
    assert tree_snapshot(tmp_path) == before


def test_new_vectors_giving_a_point_twice_name_the_point(
        upgrade: dict, source: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    v3 = upgrade["vectors"]["v3"]
    ids = np.arange(len(v3))
    ids[7] = ids[3]  # point 3 twice
    twice = tmp_path / "twice.npz"
    np.savez(twice, ids=ids, vectors=v3)
    before = tree_snapshot(tmp_path)
    code, _, err = migrate(capsys, upgrade, source.source, source.target, "--new-vectors", str(twice), "--backfill", "20")
    refused(code, err, str(twice), "id '3' appears 2 times in the new-model vectors", "1 repeated id in all")
    assert tree_snapshot(tmp_path) == before


@pytest.mark.parametrize("rows", [0, 10])
def test_new_vectors_fewer_than_the_backfill_asks_for_are_warned_about(
        upgrade: dict, source: Any, tmp_path: Path, rows: int, capsys: pytest.CaptureFixture[str]) -> None:
    """A file with no vectors (or fewer than --backfill N) cannot give N points their real vectors: the
    migration completes, and its result starts with the WARNING the docs promise, as for unknown ids."""
    v3 = upgrade["vectors"]["v3"]
    small = tmp_path / "small.npz"
    np.savez(small, ids=np.arange(rows), vectors=v3[:rows])
    code, out, err = migrate(capsys, upgrade, source.source, source.target, "--new-vectors", str(small),
                             "--backfill", "20")
    assert code == 0 and out["verification"]["ok"], err
    assert out["verification"]["spaces"].get(out["spaces"]["new"], 0) == rows
    assert out["warning"].startswith(f"WARNING: {rows} points got real new vectors where 20 were asked for "
                                     "(--backfill 20)"), out["warning"]
    assert str(small) in out["warning"] and out["text"].splitlines()[0] == out["warning"]
    if rows == 0:  # without --backfill too: a file of no vectors attaches nothing, and says so
        code, out, err = migrate(capsys, upgrade, source.source, source.target.replace("docs_v2", "docs_all"),
                                 "--new-vectors", str(small))
        assert code == 0 and out["warning"].startswith("WARNING: 0 points got real new vectors"), out
        assert "holds no new-model vectors" in out["warning"]


def test_a_backfill_larger_than_the_store_with_every_points_vector_is_no_warning(
        upgrade: dict, source: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--backfill N is at most N points: asking for more than the store holds, with a new vector for every
    point, gives every point its vector and warns of nothing."""
    v3 = upgrade["vectors"]["v3"]
    every = tmp_path / "every.npz"
    np.savez(every, ids=np.arange(len(v3)), vectors=v3)
    code, out, err = migrate(capsys, upgrade, source.source, source.target, "--new-vectors", str(every),
                             "--backfill", str(10 * len(v3)))
    assert code == 0 and out["verification"]["ok"], err
    assert out["verification"]["spaces"].get(out["spaces"]["new"], 0) == len(v3)
    assert not out.get("warning"), out["warning"]


def test_check_of_a_parquet_file_says_the_uri_names_the_folder(
        source: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = Path(source.source.removeprefix("parquet://"))
    part = folder / "part-0.parquet"
    before = tree_snapshot(tmp_path)
    code, _, err = cli(capsys, "check", "--uri", f"parquet://{part}")
    refused(code, err, "--uri", str(part), "is a file", "names the dataset's folder", f"parquet://{folder}")
    assert "no such collection" not in err
    assert tree_snapshot(tmp_path) == before


def _qdrant_collections(path: Path) -> dict[str, tuple[int, Any]]:
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(path))
    try:
        return {c.name: (client.count(c.name, exact=True).count, client.get_collection(c.name).config.params.vectors)
                for c in client.get_collections().collections}
    finally:
        client.close()


def test_a_vector_name_on_a_qdrant_collection_of_one_unnamed_vector_is_refused(
        upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    v1 = upgrade["vectors"]["v1"][:40]
    case = fill_source("qdrant", tmp_path, list(range(len(v1))), v1, upgrade["labels"][:40])
    before = _qdrant_collections(tmp_path / "qdrant")
    code, _, err = migrate(capsys, upgrade, f"{case.source}&vector=nope", case.target)
    refused(code, err, "collection 'docs_v1'", "?vector=nope", "single unnamed vector")
    code, _, err = cli(capsys, "check", "--uri", f"{case.source}&vector=nope")
    refused(code, err, "?vector=nope", "single unnamed vector")
    assert _qdrant_collections(tmp_path / "qdrant") == before  # no shadow was made
    assert not list(tmp_path.rglob("migrate-*.json"))  # and no checkpoint written


def test_an_unknown_vector_name_is_named_with_the_collections_vector_names(
        upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from qdrant_client import QdrantClient, models

    v1 = upgrade["vectors"]["v1"][:30]
    client = QdrantClient(path=str(tmp_path / "qd"))
    params = models.VectorParams(size=16, distance=models.Distance.COSINE)
    client.create_collection("named", vectors_config={"a": params, "b": params})
    client.upsert("named", points=[models.PointStruct(id=i, vector={"a": v.tolist(), "b": v.tolist()})
                                   for i, v in enumerate(v1)])
    client.close()
    before = _qdrant_collections(tmp_path / "qd")
    base = f"qdrant://{tmp_path / 'qd'}?collection="
    code, _, err = migrate(capsys, upgrade, f"{base}named&vector=c", f"{base}named_v2")
    refused(code, err, "?vector=c", "has no vector 'c'", "its named vectors are 'a', 'b'")
    code, _, err = migrate(capsys, upgrade, f"{base}named", f"{base}named_v2")  # none picked: as import says it
    refused(code, err, "named vectors 'a', 'b'; pick one with ?vector=NAME")
    assert "unnamed vector" not in err
    assert _qdrant_collections(tmp_path / "qd") == before
    assert not list(tmp_path.rglob("migrate-*.json"))


def test_an_alias_named_twice_with_two_names_is_refused_naming_both(
        upgrade: dict, source: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = tree_snapshot(tmp_path)
    code, _, err = migrate(capsys, upgrade, source.source, f"{source.target}?alias=live", "--alias", "other",
                           "--switch")
    refused(code, err, "--alias", "'other'", "?alias=live", "they differ", status=2)
    assert tree_snapshot(tmp_path) == before  # no shadow, and neither alias made
    code, _, err = cli(capsys, "rollback", "--to", f"{source.source}?alias=live", "--alias", "other")
    refused(code, err, "--alias", "'other'", "?alias=live", status=2)
    assert tree_snapshot(tmp_path) == before
    code, _, err = migrate(capsys, upgrade, source.source, source.target, "--alias", "", "--switch")
    refused(code, err, "--alias: is empty", status=2)  # never read as no alias at all
    assert tree_snapshot(tmp_path) == before
    code, _, err = cli(capsys, "rollback", "--to", source.source)  # no alias at all: a usage error, as for migrate
    refused(code, err, "--alias: name the alias to switch back", status=2)
    assert tree_snapshot(tmp_path) == before


@pytest.mark.parametrize("form", ["--alias", "?alias="])
def test_an_alias_without_switch_is_refused_as_it_would_do_nothing(
        upgrade: dict, source: Any, tmp_path: Path, form: str, capsys: pytest.CaptureFixture[str]) -> None:
    before = tree_snapshot(tmp_path)
    if form == "--alias":
        code, _, err = migrate(capsys, upgrade, source.source, source.target, "--alias", "live2")
        refused(code, err, "--alias: 'live2' is the alias a switch moves, and has no effect without --switch", status=2)
    else:
        code, _, err = migrate(capsys, upgrade, source.source, f"{source.target}?alias=live2")
        refused(code, err, "--to: ?alias=live2 is the alias a switch moves, and has no effect without --switch",
                status=2)
    assert tree_snapshot(tmp_path) == before
    # the app's migration dialog calls the same function, so it gets the same line
    with pytest.raises(InputError, match="has no effect without --switch"):
        migrate_store(upgrade["bundle"], source.source, source.target, alias="live2")
    assert tree_snapshot(tmp_path) == before
    code, out, err = migrate(capsys, upgrade, source.source, source.target, "--alias", "live2", "--switch")
    assert code == 0 and out["switched"] and out["alias"] == "live2", err  # with --switch it moves the alias


def test_the_quality_of_an_empty_collection_is_refused_for_what_it_is(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """`check --label-field` on an empty collection blamed --served-as, which was not given."""
    import chromadb
    from chromadb.config import Settings

    chromadb.PersistentClient(path=str(tmp_path / "chroma"), settings=Settings(anonymized_telemetry=False)
                              ).create_collection("empty_col")
    code, _, err = cli(capsys, "check", "--uri", f"chroma://{tmp_path / 'chroma'}?collection=empty_col",
                       "--label-field", "label")
    refused(code, err, "--label-field", "holds no points to measure")
