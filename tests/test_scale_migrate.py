"""``migrate --engine ray`` on a LanceDB store against the local migration: same shadow, resumable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bundle_fixtures import build_upgrade_workspace
from scale_fixtures import write_lance

from embridge.core.bundle import export_bundle, load_bundle
from embridge.core.cli.main import main
from embridge.core.connectors import SPACE_FIELD, open_store
from embridge.core.connectors.connector import path_uri
from embridge.core.errors import Cancelled, InputError
from embridge.core.scale.ray_migrate import migrate_on_ray


@pytest.fixture(scope="module")
def fct(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from embridge.core.store import Workspace

    root = tmp_path_factory.mktemp("scale_migrate")
    up = build_upgrade_workspace(root / "ws", with_report=False)
    with Workspace.open(up["path"]) as ws:
        export_bundle(ws, root / "fct.zip", [up["runs"]["fct"]])
    return {**up, "bundle": root / "fct.zip"}


def collection(uri: str) -> tuple[list, np.ndarray, list[dict]]:
    """Every point of a collection, in id order."""
    store = open_store(uri)
    try:
        ids, vectors, payloads = [], [], []
        for batch in store.read_batches(10_000):
            ids += list(batch.ids)
            vectors.append(batch.vectors)
            payloads += batch.payloads
    finally:
        store.close()
    order = np.argsort(ids, kind="stable")
    return [ids[i] for i in order], np.concatenate(vectors)[order], [payloads[i] for i in order]


def _stopped_after_one_partition(fct: dict, tmp_path: Path, stage: str = "writing") -> tuple[np.ndarray, str, str]:
    """(the source's vectors, its URI, the shadow's URI) of a Ray migration stopped once a partition is written
    (or, with ``stage="transforming"``, once one is transformed, before the shadow exists)."""
    v1 = np.tile(fct["vectors"]["v1"], (2, 1))
    write_lance(tmp_path / "db", "docs", v1, fragments=3)
    src, dst = f"lancedb://{tmp_path / 'db'}?table=docs", f"lancedb://{tmp_path / 'db'}?table=shadow"
    stages: list[str] = []
    with pytest.raises(Cancelled):
        migrate_on_ray(fct["bundle"], src, dst, on_progress=lambda i, n, info: stages.append(info["stage"]),
                       should_stop=lambda: stages.count(stage) >= 1)
    return v1, src, dst


def test_ray_migration_equals_the_local_one_and_switches(ray_cluster: Any, fct: dict, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    v1 = np.tile(fct["vectors"]["v1"], (3, 1))
    folder = tmp_path / "my db %41"  # the Ray engine reopens the dataset by a URI of its own: quoted
    write_lance(folder, "docs", v1, fragments=4)
    db = path_uri("lancedb", folder)
    common = ["migrate", "--bundle", str(fct["bundle"]), "--from", f"{db}?table=docs", "--json"]
    assert main([*common, "--to", f"{db}?table=docs_local"]) == 0
    local = json.loads(capsys.readouterr().out)
    assert main([*common, "--to", f"{db}?table=docs_ray", "--engine", "ray", "--switch", "--alias", "live"]) == 0
    ray_run = json.loads(capsys.readouterr().out)
    assert ray_run["verification"]["ok"] and ray_run["written"] == local["written"] == len(v1)
    assert ray_run["switched"] and ray_run["alias"] == "live"
    a_ids, a_vec, a_pay = collection(f"{db}?table=docs_local")
    b_ids, b_vec, b_pay = collection(f"{db}?table=docs_ray")
    assert a_ids == b_ids == list(range(len(v1)))
    assert a_pay == b_pay and {p[SPACE_FIELD] for p in b_pay} == {local["spaces"]["adapted"]}
    np.testing.assert_allclose(b_vec, a_vec, atol=1e-6, rtol=0)
    np.testing.assert_allclose(b_vec, load_bundle(fct["bundle"])(v1, normalise_output=True), atol=1e-6, rtol=0)
    assert collection(f"{db}?table=live")[0] == b_ids  # the alias serves the Ray shadow
    assert not list((tmp_path / "db").glob(".embridge-ray-*"))  # staging removed once verified


def test_ray_migration_resumes_after_a_stop_and_refuses_what_it_cannot_do(ray_cluster: Any, fct: dict,
                                                                          tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    v1 = np.tile(fct["vectors"]["v1"], (2, 1))
    write_lance(tmp_path / "db", "docs", v1, fragments=3)
    src, dst = f"lancedb://{tmp_path / 'db'}?table=docs", f"lancedb://{tmp_path / 'db'}?table=shadow"
    stages: list[str] = []
    with pytest.raises(Cancelled):  # stop once the first partition is in the shadow
        migrate_on_ray(fct["bundle"], src, dst, on_progress=lambda i, n, info: stages.append(info["stage"]),
                       should_stop=lambda: stages.count("writing") >= 1)
    partial = collection(dst)[0]
    assert 0 < len(partial) < len(v1)
    # the stopped shadow is named half-written by check, and no migration on either engine takes it as a source
    # (a Ray migration's checkpoint has a key of its own, which check and the refusal did not read)
    from embridge.core.connectors.check import check_store

    checked = check_store(dst)
    assert checked.state == "half-migrated" and checked.migration["status"] == "running"
    onward = f"lancedb://{tmp_path / 'db'}?table=onward"
    for engine in ("ray", "local"):
        capsys.readouterr()
        assert main(["migrate", "--bundle", str(fct["bundle"]), "--from", dst, "--to", onward, "--engine", engine,
                     "--switch", "--alias", "live"]) == 1
        err = capsys.readouterr().err
        assert f"an unfinished migration (running, or stopped) has written part of it ({len(partial)} of {len(v1)} " \
            "points)" in err and err.rstrip().endswith("nothing was written"), err
    with open_store(onward) as nothing:
        assert not nothing.exists()
    resumed = migrate_on_ray(fct["bundle"], src, dst)
    assert resumed.status == "completed" and resumed.resumed_from == len(partial)
    assert resumed.written == len(v1) - len(partial) and resumed.verification.ok
    ids, vectors, _ = collection(dst)
    assert ids == list(range(len(v1)))
    np.testing.assert_allclose(vectors, load_bundle(fct["bundle"])(v1, normalise_output=True), atol=1e-6, rtol=0)
    again = migrate_on_ray(fct["bundle"], src, dst)
    assert again.status == "already complete" and again.written == 0

    capsys.readouterr()
    args = ["migrate", "--bundle", str(fct["bundle"]), "--from", src, "--engine", "ray"]
    assert main([*args, "--to", f"lancedb://{tmp_path / 'db'}?table=s2", "--backfill", "3"]) == 2  # a usage error
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--engine" in err[0] and "--engine local" in err[0]
    qdrant = f"qdrant://{tmp_path / 'q'}?collection=docs"
    from qdrant_client import QdrantClient

    QdrantClient(path=str(tmp_path / "q")).close()  # a real store folder: the refusal is about the engine
    assert main(["migrate", "--bundle", str(fct["bundle"]), "--from", qdrant, "--to",
                 f"qdrant://{tmp_path / 'q'}?collection=d2", "--engine", "ray"]) == 1
    assert "partitioned datasets" in capsys.readouterr().err


def test_ray_migration_refuses_to_resume_over_a_source_changed_in_place(ray_cluster: Any, fct: dict,
                                                                       tmp_path: Path) -> None:
    """Points rewritten in the source after part of it was written (same count) make another migration:
    resuming would keep the old points' vectors in the shadow."""
    import lancedb

    from embridge.core.connectors import VectorStoreError

    v1, src, dst = _stopped_after_one_partition(fct, tmp_path)
    written = collection(dst)
    lancedb.connect(str(tmp_path / "db")).open_table("docs").update(
        where="id < 5", values={"vector": (-v1[0]).tolist()})
    with pytest.raises(VectorStoreError, match="source changed since"):
        migrate_on_ray(fct["bundle"], src, dst)
    after = collection(dst)
    assert after[0] == written[0]
    np.testing.assert_array_equal(after[1], written[1])


def test_ray_migration_refuses_a_repeated_id_before_writing_its_partition(ray_cluster: Any, fct: dict,
                                                                          tmp_path: Path) -> None:
    """As in a local migration, an id the source holds twice is refused rather than written twice."""
    import lancedb
    import pyarrow as pa

    v1 = np.asarray(fct["vectors"]["v1"][:40], dtype=np.float32)

    def part(ids: list[int], rows: slice) -> Any:
        return pa.table({"id": pa.array(ids, pa.int64()),
                         "vector": pa.FixedSizeListArray.from_arrays(pa.array(v1[rows].ravel()), v1.shape[1])})

    table = lancedb.connect(str(tmp_path / "db")).create_table("dup", part(list(range(20)), slice(0, 20)))
    table.add(part([19, *range(20, 39)], slice(20, 40)))  # the second fragment repeats id 19
    db = f"lancedb://{tmp_path / 'db'}"
    with pytest.raises(InputError, match=r"dup.lance \(fragment 1\): row 0: id 19 appears more than once in the "
                       r"dataset"):  # found by reading the ids before any partition is transformed
        migrate_on_ray(fct["bundle"], f"{db}?table=dup", f"{db}?table=dup_v2")
    shadow = open_store(f"{db}?table=dup_v2")
    try:
        assert not shadow.exists() or shadow.count() <= 20  # the repeating partition was never written
    finally:
        shadow.close()


def test_ray_migration_refuses_foreign_space_fields_and_a_second_writer(ray_cluster: Any, fct: dict,
                                                                        tmp_path: Path) -> None:
    """As a local migration: a space field Embridge did not write is refused before anything is staged,
    and a second migration into a target whose lock is held is refused at once."""
    import lancedb
    import pyarrow as pa

    from embridge.core.connectors import VectorStoreError
    from embridge.core.connectors.job_lock import job_lock

    v1 = np.asarray(fct["vectors"]["v1"][:30], dtype=np.float32)
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(v1.ravel()), v1.shape[1])
    db = lancedb.connect(str(tmp_path / "db"))
    db.create_table("theirs", pa.table({"id": pa.array(range(30), pa.int64()), "vector": vectors,
                                        SPACE_FIELD: pa.array(["mine"] * 30)}))
    db.create_table("plain", pa.table({"id": pa.array(range(30), pa.int64()), "vector": vectors}))
    uri = f"lancedb://{tmp_path / 'db'}"
    with pytest.raises(VectorStoreError, match=f"field '{SPACE_FIELD}' holds"):
        migrate_on_ray(fct["bundle"], f"{uri}?table=theirs", f"{uri}?table=theirs_v2")
    assert not (tmp_path / "db" / "theirs_v2.lance").exists()
    target = open_store(f"{uri}?table=plain_v2")
    try:
        with job_lock(target, "migrate-plain_v2"), pytest.raises(VectorStoreError, match="another migration"):
            migrate_on_ray(fct["bundle"], f"{uri}?table=plain", f"{uri}?table=plain_v2")
    finally:
        target.close()


def test_migrate_on_ray_with_no_cluster_at_the_address_writes_no_checkpoint(fct: dict, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """It left ``ray-migrate-<name>.json`` saying "running" beside the store."""
    write_lance(tmp_path / "db", "docs", fct["vectors"]["v1"], fragments=2)
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    code = main(["migrate", "--bundle", str(fct["bundle"]), "--from", f"lancedb://{tmp_path / 'db'}?table=docs",
                 "--to", f"lancedb://{tmp_path / 'db'}?table=shadow", "--engine", "ray", "--ray-address",
                 "127.0.0.1:1"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "--ray-address 127.0.0.1:1: no Ray cluster answers there" in err
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before


def test_a_ray_partition_cut_short_by_a_crash_lands_once(ray_cluster: Any, fct: dict, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A LanceDB write appends: a partition written but not yet recorded was written again on the rerun, and the
    shadow held its points twice (verification then failed for good)."""
    from embridge.core.connectors.lancedb_store import LanceDBConnector

    v1 = np.tile(fct["vectors"]["v1"], (2, 1))
    write_lance(tmp_path / "db", "docs", v1, fragments=3)
    src, dst = f"lancedb://{tmp_path / 'db'}?table=docs", f"lancedb://{tmp_path / 'db'}?table=shadow"
    real_write, writes = LanceDBConnector.write, []

    def write_then_die(self: LanceDBConnector, batch: Any) -> None:
        real_write(self, batch)
        writes.append(len(batch))
        if len(writes) == 2:  # the second partition is in the shadow, its checkpoint not yet saved
            raise Cancelled("killed")

    monkeypatch.setattr(LanceDBConnector, "write", write_then_die)
    with pytest.raises(Cancelled):
        migrate_on_ray(fct["bundle"], src, dst)
    monkeypatch.setattr(LanceDBConnector, "write", real_write)
    assert len(collection(dst)[0]) == writes[0] + writes[1]
    resumed = migrate_on_ray(fct["bundle"], src, dst)
    assert resumed.status == "completed" and resumed.verification.ok and resumed.resumed_from == writes[0]
    ids, vectors, _ = collection(dst)
    assert ids == list(range(len(v1)))  # each once
    np.testing.assert_allclose(vectors, load_bundle(fct["bundle"])(v1, normalise_output=True), atol=1e-6, rtol=0)


def test_the_engines_never_write_into_each_others_shadow(ray_cluster: Any, fct: dict, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Each kept its checkpoint under its own key: a Ray run appended into a local run's finished shadow (1,440
    points for 720), and a rerun on the other engine was told the shadow was no migration Embridge started."""
    v1 = np.tile(fct["vectors"]["v1"], (2, 1))
    write_lance(tmp_path / "db", "docs", v1, fragments=3)
    db = f"lancedb://{tmp_path / 'db'}?table="
    base = ["migrate", "--bundle", str(fct["bundle"]), "--from", db + "docs"]
    assert main([*base, "--to", db + "local"]) == 0
    assert main([*base, "--to", db + "ray", "--engine", "ray"]) == 0
    capsys.readouterr()
    for target, engine, other in (("local", "ray", "local"), ("ray", "local", "ray")):
        assert main([*base, "--to", db + target, "--engine", engine]) == 1
        err = capsys.readouterr().err
        assert f"written by a migration on the {other} engine; run it with --engine {other}" in err, err
        assert collection(db + target)[0] == list(range(len(v1)))  # untouched
    assert main([*base, "--to", db + "ray", "--engine", "ray", "--batch", "100"]) == 2
    assert "--batch: sizes the local engine's batches" in capsys.readouterr().err


def test_a_ray_migration_keeps_the_local_ones_notes_and_index_and_moves_no_alias_over_a_changed_source(
        ray_cluster: Any, fct: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lancedb
    from lancedb.index import IvfFlat

    from embridge.core.connectors import VectorStoreError
    from embridge.core.connectors.lancedb_store import LanceDBConnector

    v1 = np.tile(fct["vectors"]["v1"], (2, 1)) * np.linspace(1.0, 10.0, 2 * len(fct["vectors"]["v1"]))[:, None]
    write_lance(tmp_path / "db", "docs", v1, fragments=3)
    lancedb.connect(str(tmp_path / "db")).open_table("docs").create_index(
        "vector", config=IvfFlat(distance_type="l2", num_partitions=2))
    src, dst = f"lancedb://{tmp_path / 'db'}?table=docs", f"lancedb://{tmp_path / 'db'}?table=shadow"
    done = migrate_on_ray(fct["bundle"], src, dst)
    assert "the source store ranks by L2 distance, and its vectors' lengths vary" in done.warning
    with open_store(dst) as shadow:
        assert shadow.metric() == "l2" and shadow._vector_index().index_type == "IVF_FLAT"
    real_write = LanceDBConnector.write

    def write_and_touch_the_source(self: LanceDBConnector, batch: Any) -> None:
        real_write(self, batch)
        if self.collection == "moved":  # a writer changes a source point in place while the run writes
            lancedb.connect(str(tmp_path / "db")).open_table("docs").update(where="id = 5", values={"label": "x"})

    monkeypatch.setattr(LanceDBConnector, "write", write_and_touch_the_source)
    with pytest.raises(VectorStoreError, match="was written since the migration started, so the shadow may not"):
        migrate_on_ray(fct["bundle"], src, f"lancedb://{tmp_path / 'db'}?table=moved", switch=True, alias="live")
    with open_store(f"lancedb://{tmp_path / 'db'}?table=live") as live:
        assert not live.exists()  # the alias was not made


def test_a_ray_migration_into_a_dropped_shadows_name_starts_afresh(ray_cluster: Any, fct: dict, tmp_path: Path) -> None:
    """The dropped shadow's staged partitions stayed beside the store: a fresh run over a changed source was refused
    naming a hidden staging folder as its --to."""
    import lancedb

    v1, src, dst = _stopped_after_one_partition(fct, tmp_path)
    assert (tmp_path / "db" / ".embridge-ray-shadow").is_dir()
    lancedb.connect(str(tmp_path / "db")).drop_table("shadow")  # as the refusals advise
    write_lance(tmp_path / "db", "docs", v1[:40], fragments=1, append=True)  # and the source moved on
    done = migrate_on_ray(fct["bundle"], src, dst)
    assert done.status == "completed" and done.resumed_from == 0 and done.verification.ok
    assert collection(dst)[0] == list(range(len(v1) + 40))
    assert not (tmp_path / "db" / ".embridge-ray-shadow").exists()


def test_a_ray_migration_stopped_while_transforming_keeps_its_staged_partitions(ray_cluster: Any, fct: dict,
                                                                              tmp_path: Path) -> None:
    """Stopped before its first write, the shadow does not exist yet; the rerun is a fresh start of the same job
    and takes the partitions already transformed instead of transforming them again."""
    v1 = np.tile(fct["vectors"]["v1"], (2, 1))
    write_lance(tmp_path / "db", "docs", v1, fragments=3)
    src, dst = f"lancedb://{tmp_path / 'db'}?table=docs", f"lancedb://{tmp_path / 'db'}?table=shadow"
    staging = tmp_path / "db" / ".embridge-ray-shadow"
    stages: list[str] = []
    with pytest.raises(Cancelled):
        migrate_on_ray(fct["bundle"], src, dst, on_progress=lambda i, n, info: stages.append(info["stage"]),
                       should_stop=lambda: stages.count("transforming") >= 1)
    staged = {p.name: p.stat().st_mtime_ns for p in staging.glob("*.parquet")}
    assert staged and not (tmp_path / "db" / "shadow.lance").exists()
    stages.clear()
    with pytest.raises(Cancelled):  # stopped again once every partition is transformed
        migrate_on_ray(fct["bundle"], src, dst, on_progress=lambda i, n, info: stages.append(info["stage"]),
                       should_stop=lambda: stages.count("writing") >= 1)
    assert {name: (staging / name).stat().st_mtime_ns for name in staged} == staged  # not transformed again
    done = migrate_on_ray(fct["bundle"], src, dst)
    assert done.status == "completed" and done.verification.ok and collection(dst)[0] == list(range(len(v1)))


def test_a_ray_migration_stopped_while_transforming_and_finished_locally_leaves_no_staging(
        ray_cluster: Any, fct: dict, tmp_path: Path) -> None:
    """The local engine took over the Ray run's target (nothing written there yet) and removed its checkpoint,
    but the Ray run's staged partitions stayed in the store folder with nothing to remove them."""
    from embridge.core.connectors.migration import migrate_store

    v1, src, dst = _stopped_after_one_partition(fct, tmp_path, stage="transforming")
    staging = tmp_path / "db" / ".embridge-ray-shadow"
    assert list(staging.glob("*.parquet")) and not (tmp_path / "db" / "shadow.lance").exists()
    done = migrate_store(fct["bundle"], src, dst)
    assert done.status == "completed" and done.verification.ok and collection(dst)[0] == list(range(len(v1)))
    assert not staging.exists()


def test_a_ray_migration_resumes_over_staging_an_earlier_version_began(ray_cluster: Any, fct: dict,
                                                                       tmp_path: Path) -> None:
    """Staging whose job marker predates the space marker was refused as another transform, naming the hidden
    staging folder as --to, on every rerun; it is this job's intermediate files, so they are made again."""
    import json

    from embridge.core.scale.output_folder import STATE_FILE

    v1, src, dst = _stopped_after_one_partition(fct, tmp_path)
    marker = tmp_path / "db" / ".embridge-ray-shadow" / STATE_FILE
    state = json.loads(marker.read_text())
    del state["marks"]  # what the earlier version recorded
    marker.write_text(json.dumps(state))
    done = migrate_on_ray(fct["bundle"], src, dst)
    assert done.status == "completed" and done.verification.ok
    assert collection(dst)[0] == list(range(len(v1)))  # every point once: those loaded before are not loaded twice
