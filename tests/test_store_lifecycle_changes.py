"""A store's life after a migration: points changed under a served collection, an alias left dangling,
a rerun with other options, and sources whose files disagree on the id type.

Parquet carries these (real files, fast); the rules are the store-independent core's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from store_fixtures import cli, fct_upgrade, fill_source, read_all

from embridge.core.store import Workspace


@pytest.fixture(scope="module")
def upgrade(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    up = fct_upgrade(tmp_path_factory.mktemp("store-lifecycle"))
    return {**up, "bundle": str(up["bundle"])}


@pytest.fixture
def source(upgrade: dict, tmp_path: Path) -> Any:
    v1 = upgrade["vectors"]["v1"]
    return fill_source("parquet", tmp_path, list(range(len(v1))), v1, upgrade["labels"])


def _folder(uri: str) -> Path:
    return Path(uri.removeprefix("parquet://").split("?", 1)[0])


def _errors(err: str) -> int:
    return sum(line.startswith("embridge:") for line in err.splitlines())


def _migrate(capsys: pytest.CaptureFixture[str], upgrade: dict, source: Any, *extra: str) -> tuple[int, Any, str]:
    return cli(capsys, "migrate", "--bundle", upgrade["bundle"], "--from", source.source, "--to", source.target,
               "--batch", "40", *extra)


def test_points_removed_from_a_served_shadow_are_said_by_check_and_rollback(
        upgrade: dict, source: Any, capsys: pytest.CaptureFixture[str]) -> None:
    n = len(upgrade["vectors"]["v1"])
    code, out, err = _migrate(capsys, upgrade, source, "--switch", "--alias", "docs")
    assert code == 0, err
    code, checked, _ = cli(capsys, "check", "--uri", source.alias_uri)
    assert checked["migration"] == {"status": "complete", "written": n, "total": n, "source_changed": False} \
        and checked["notes"] == []
    shadow = _folder(source.target)
    first = sorted(shadow.glob("*.parquet"))[0]
    lost = len(read_all(f"parquet://{first.parent}"))  # every point of the shadow, before one file goes
    first.unlink()
    held = len(read_all(source.alias_uri))
    assert 0 < held < lost == n
    code, checked, _ = cli(capsys, "check", "--uri", source.alias_uri)
    assert code == 0 and checked["count"] == held
    said = f"its migration wrote {n} points but it holds {held}: points were removed outside the migration"
    assert checked["migration"]["changed"] == said
    assert any(said in note for note in checked["notes"])
    from embridge.core.cli.main import main

    assert main(["check", "--uri", source.alias_uri]) == 0  # the plain text says it too
    assert said in capsys.readouterr().out
    # rolling back and forth onto it is the operator's call (a live collection takes its own writes): said
    assert cli(capsys, "rollback", "--to", source.rollback)[0] == 0
    code, out, err = cli(capsys, "rollback", "--to", f"{source.target}?alias=docs")
    assert code == 0 and out["collection"] == "docs_v2" and out["note"] == said
    # and a rerun of the migration into it refuses it, naming both counts
    code, _, err = _migrate(capsys, upgrade, source)
    assert code == 1 and f"records {n} points written, but it holds {held}" in err and _errors(err) == 1


def test_check_on_an_alias_whose_collection_was_dropped_names_the_alias(
        upgrade: dict, source: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert _migrate(capsys, upgrade, source, "--switch", "--alias", "docs")[0] == 0
    shutil.rmtree(_folder(source.target))
    code, _, err = cli(capsys, "check", "--uri", source.alias_uri)
    assert code == 1 and _errors(err) == 1
    assert "'docs' is an alias of 'docs_v2', which no longer exists" in err and "embridge rollback" in err


def test_a_seed_without_new_vectors_is_refused_and_a_rerun_names_what_differs(
        upgrade: dict, source: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = _migrate(capsys, upgrade, source, "--seed", "1")
    assert code == 2 and "--seed: chooses which points get real new-model vectors" in err
    assert not _folder(source.target).exists()
    assert _migrate(capsys, upgrade, source)[0] == 0
    v3 = upgrade["vectors"]["v3"]
    new_file = tmp_path / "new.npz"
    np.savez(new_file, ids=np.arange(len(v3)), vectors=v3)
    code, _, err = _migrate(capsys, upgrade, source, "--new-vectors", str(new_file), "--backfill", "5",
                            "--seed", "3")
    assert code == 1 and _errors(err) == 1
    for part in ("--backfill 5 where it ran with none", "--seed 3 where it ran with 0",
                 "--new-vectors where it ran without", "run it with the same options"):
        assert part in err, err
    extra = _folder(source.source) / "part-9.parquet"  # the source grew since the migration
    shutil.copy(sorted(_folder(source.source).glob("part-*.parquet"))[0], extra)
    import pyarrow.parquet as pq

    table = pq.read_table(extra)
    import pyarrow as pa

    pq.write_table(table.set_column(0, "id", pa.array(np.arange(10_000, 10_000 + table.num_rows))), extra)
    n = len(v3)
    code, _, err = _migrate(capsys, upgrade, source)  # complete, and it may serve: refused, but nothing to drop
    assert code == 1 and _errors(err) == 1, err
    assert f"complete, of a source that held {n} points then and holds {n + table.num_rows} now" in err
    assert "migrate into a new collection to take the change" in err and "drop" not in err


def test_files_of_one_dataset_must_agree_on_the_id_type(
        upgrade: dict, source: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    second = sorted(_folder(source.source).glob("part-*.parquet"))[1]
    table = pq.read_table(second)
    pq.write_table(table.set_column(0, "id", pa.array([str(i) for i in table.column("id").to_pylist()])), second)
    before = {p.name: p.read_bytes() for p in _folder(source.source).iterdir()}
    code, _, err = _migrate(capsys, upgrade, source)
    assert code == 1 and _errors(err) == 1
    assert f"{second}: column 'id' holds text ids, but part-0.parquet holds integer ones" in err
    assert not _folder(source.target).exists()
    with Workspace.create(tmp_path / "ws2") as ws:
        ws_dir = ws.root
    code, _, err = cli(capsys, "import", "-w", str(ws_dir), "--from", source.source)
    assert code == 1 and "every file needs the same id type" in err
    assert {p.name: p.read_bytes() for p in _folder(source.source).iterdir()} == before


def test_transform_refuses_float_ids_as_a_migration_does(
        upgrade: dict, source: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    for part in _folder(source.source).glob("part-*.parquet"):
        table = pq.read_table(part)
        pq.write_table(table.set_column(0, "id", table.column("id").cast("double")), part)
    code, _, err = _migrate(capsys, upgrade, source)
    assert code == 1 and "holds double ids; point ids must be integers or text" in err
    out = tmp_path / "transformed"
    code, _, err = cli(capsys, "transform", "--bundle", upgrade["bundle"], "--from",
                       f"parquet://{_folder(source.source)}", "--to", f"parquet://{out}")
    assert code == 1 and "column 'id' is double; ids must be integers or text" in err and _errors(err) == 1
    assert not out.exists() or not list(out.rglob("*.parquet"))


def test_bundle_apply_refuses_an_output_that_names_a_folder(
        upgrade: dict, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    vectors = tmp_path / "in.npy"
    np.save(vectors, upgrade["vectors"]["v1"][:20])
    for out in (f"{tmp_path}/new-folder/", f"{tmp_path}/new-folder/sub/"):
        code, _, err = cli(capsys, "bundle", "apply", upgrade["bundle"], "--vectors", str(vectors), "--out", out)
        assert code == 1 and "names a folder, not a file; give the .npy file to write" in err
        assert not (tmp_path / "new-folder").exists()


def test_a_rerun_from_another_collection_names_it_without_a_password() -> None:
    from embridge.core.connectors.migration_fingerprint import comparable, fingerprint_change
    from embridge.core.credentials import masked

    assert masked("postgresql://me:s3cr:et@db.local:5432/x?table=t") == "postgresql://me:***@db.local:5432/x?table=t"
    assert masked("qdrant://q.local?collection=d&api_key=k3y&Token=t") == "qdrant://q.local?collection=d&api_key=***&Token=***"
    assert masked("/data/lance") == "/data/lance"
    now = {"source": "postgresql://me:***@h/db", "source_collection": "docs_v9", "source_count": 5, "bundle": "b",
           "order": "random", "backfill": None, "seed": 0, "new_vectors": None}
    recorded_before_masking = {**now, "source": "postgresql://me:old-pw@h/db"}  # a checkpoint of an earlier version
    assert comparable(recorded_before_masking) == now  # a password changed since is the same migration
    said = fingerprint_change({**recorded_before_masking, "source_collection": "docs"}, now)
    assert said == "another source: it was migrated from collection 'docs' of postgresql://me:***@h/db"


def test_check_while_a_migration_writes_reads_its_checkpoint_before_the_points(
        upgrade: dict, source: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A migration that writes a batch and moves its checkpoint while ``check`` runs only adds points: read
    after the checkpoint they are all there. Read before it, the batch was missing and ``check`` said points
    were removed (and a rerun would refuse the store), with a count that disagreed with its spaces."""
    from embridge.core.connectors import check as check_module

    n = len(upgrade["vectors"]["v1"])
    assert _migrate(capsys, upgrade, source)[0] == 0
    last = sorted(_folder(source.target).glob("*.parquet"))[-1]
    away = last.with_name(last.name + ".writing")
    last.rename(away)  # the migration's last batch, still being written when check starts
    reading = check_module.migration_state

    def batch_lands_meanwhile(store: Any, collection: str) -> Any:
        if away.exists():
            away.rename(last)
        return reading(store, collection)

    monkeypatch.setattr(check_module, "migration_state", batch_lands_meanwhile)
    code, checked, err = cli(capsys, "check", "--uri", source.target)
    assert code == 0, err
    assert checked["count"] == sum(checked["spaces"].values()) == n
    assert checked["migration"] == {"status": "complete", "written": n, "total": n, "source_changed": False} \
        and checked["notes"] == []


def test_a_rollback_over_two_migrations_names_the_points_version_as_one_step_does(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """v1 -> v2 -> v3, then the alias straight back to v1: its points were 'unmarked' (from v2 they read v1's),
    though the store's checkpoints record the migration out of v1."""
    from bundle_fixtures import build_upgrade_workspace

    from embridge.core.bundle import export_bundle
    from embridge.core.train.runs import train_run

    up = build_upgrade_workspace(tmp_path / "ws", with_report=False)
    with Workspace.open(up["path"]) as ws:
        for old, new in (("v1", "v2"), ("v2", "v3")):
            run = train_run(ws, "fct", old=old, new=new, device="cpu", config={"epochs": 1})
            export_bundle(ws, tmp_path / f"{old}{new}.zip", [run["run_id"]])
        labels = [str(x) for x in ws.labels(up["ids"])]
    v1 = up["vectors"]["v1"]
    fill_source("parquet", tmp_path, list(range(len(v1))), v1, labels)
    base = f"parquet://{tmp_path}/pq"
    for old, new in (("v1", "v2"), ("v2", "v3")):
        code, _, err = cli(capsys, "migrate", "--bundle", str(tmp_path / f"{old}{new}.zip"), "--from",
                           f"{base}/docs_{old}", "--to", f"{base}/docs_{new}?alias=docs", "--switch")
        assert code == 0, err
    from embridge.core.cli.main import main

    assert main(["rollback", "--to", f"{base}/docs_v1", "--alias", "docs"]) == 0
    assert f"its {len(v1)} points are v1's: queries must be embedded by v1 again" in capsys.readouterr().out

    assert main(["check", "--uri", f"{base}/docs"]) == 0
    said = capsys.readouterr().out
    assert f"its {len(v1)} unmarked points are read as v1's: the migration from it into 'docs_v2' took them" in said


@pytest.mark.parametrize("command", ["migrate", "rollback"])
def test_a_switch_stopped_between_moving_the_alias_and_recording_it_can_be_finished_and_rolled_back(
        upgrade: dict, source: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    """Killed there, the link and its record disagreed: the rerun, the rollback and the switch forward were
    all refused as moving 'a symbolic link ... that Embridge did not make', with no way out but deleting it."""
    from embridge.core.cli.main import main
    from embridge.core.connectors.parquet import ParquetConnector

    base = source.target.split("?", 1)[0].rsplit("/", 1)[0]
    old, new, served = source.source, f"{base}/shadow", f"{base}/docs"
    switch = ["migrate", "--bundle", upgrade["bundle"], "--from", old, "--to", f"{new}?alias=docs", "--switch"]
    if command == "rollback":
        assert main(switch) == 0
    real_save = ParquetConnector.save_state

    def killed_after_the_move(self: ParquetConnector, key: str, state: Any) -> None:
        if key.startswith("alias-") and isinstance(state, dict) and "pending" not in state:
            raise KeyboardInterrupt  # as a kill -9 right after the store moved the alias
        real_save(self, key, state)

    monkeypatch.setattr(ParquetConnector, "save_state", killed_after_the_move)
    again = switch if command == "migrate" else ["rollback", "--to", old, "--alias", "docs"]
    assert main(again) == 130  # stopped as a kill -9 would, with the alias moved and nothing recorded
    monkeypatch.setattr(ParquetConnector, "save_state", real_save)
    capsys.readouterr()
    if command == "rollback":  # check, which moves nothing, reads the move made: v1's points, as after a rollback
        assert main(["check", "--uri", served, "--json"]) == 0
        checked = json.loads(capsys.readouterr().out)
        assert checked["state"] == "single" and list(checked["versions"]) == ["v1"], checked
    assert main(again) == 0, capsys.readouterr().err  # the rerun finds the move made and records it
    assert "already serves" in capsys.readouterr().out
    back, forward = (old, new) if command == "migrate" else (new, old)
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a swap killed before its rename left its temporary link, named by a pid no longer running
    stale = _folder(served).parent / f".docs.{gone.pid}.tmp-link"
    stale.symlink_to("docs_v1")
    assert main(["rollback", "--to", back, "--alias", "docs"]) == 0, capsys.readouterr().err
    assert not stale.is_symlink()
    assert Path(_folder(served)).resolve() == Path(_folder(back)).resolve()
    assert main(["rollback", "--to", forward, "--alias", "docs"]) == 0, capsys.readouterr().err
    assert Path(_folder(served)).resolve() == Path(_folder(forward)).resolve()
