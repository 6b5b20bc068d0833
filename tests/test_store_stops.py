"""Migrations that end early: refused by a check before anything is written, or stopped by Ctrl-C.

A refused migration leaves the target's checkpoint as it found it (none, or the previous one byte for
byte), so ``check`` and the next migration see nothing of it. Ctrl-C during a PostgreSQL migration ends
with Embridge's one line and exit 130, not psycopg's warnings as well, and the rerun resumes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.interrupt_child import interrupt_when
from store_fixtures import cli, fct_upgrade, fresh_pg_database

PROGRESS = re.compile(r"^migrate: \d+/\d+ ")


@pytest.fixture(scope="module")
def upgrade(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return fct_upgrade(tmp_path_factory.mktemp("store-stops"))


def one_line(result: tuple[int, Any, str], *needles: str) -> None:
    """Exit 1 and one error line (besides progress lines) holding every needle."""
    code, _, err = result
    lines = [line for line in err.splitlines() if not PROGRESS.match(line)]
    assert code == 1 and len(lines) == 1 and lines[0].startswith("embridge: error: "), err
    for needle in needles:
        assert needle in err, (needle, err)


def parquet_store(root: Path, vectors: dict[str, np.ndarray]) -> tuple[Callable[[str], str], Callable[[], Any]]:
    """Parquet datasets ``root/pq/<name>``; returns (uri of a dataset, the checkpoint of target ``out``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for name, v in vectors.items():
        (root / "pq" / name).mkdir(parents=True)
        flat = pa.array(v.astype(np.float32).ravel())
        pq.write_table(pa.table({"id": pa.array(range(len(v)), pa.int64()),
                                 "vector": pa.FixedSizeListArray.from_arrays(flat, v.shape[1])}),
                       root / "pq" / name / "part-0.parquet")
    file = root / "pq.embridge" / "migrate-out.json"
    return (lambda name: f"parquet://{root / 'pq' / name}"), (lambda: file.read_bytes() if file.exists() else None)


def pg_store(base: str, vectors: dict[str, np.ndarray]) -> tuple[Callable[[str], str], Callable[[], Any]]:
    """pgvector tables; returns (uri of a table, the checkpoint row of target ``out``)."""
    import psycopg
    from pgvector.psycopg import register_vector

    with psycopg.connect(base, autocommit=True) as conn:
        register_vector(conn)
        for name, v in vectors.items():
            conn.execute(f"create table {name} (id bigint primary key, embedding vector({v.shape[1]}))")
            with conn.cursor() as cur, cur.copy(f"copy {name} (id, embedding) from stdin") as cp:
                for i, row in enumerate(v.astype(np.float32)):
                    cp.write_row([i, row])

    def state() -> Any:
        with psycopg.connect(base, autocommit=True) as conn:
            if conn.execute("select to_regclass('embridge_state')").fetchone()[0] is None:
                return None
            row = conn.execute("select state::text from embridge_state where key = 'migrate-out'").fetchone()
            return row[0] if row else None

    return (lambda name: f"{base}&column=embedding&table={name}"), state


@pytest.mark.parametrize("kind", ["parquet", "pgvector"])
def test_a_refused_migration_leaves_the_checkpoint_as_it_was(kind: str, upgrade: dict, tmp_path: Path,
                                                             request: pytest.FixtureRequest,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from embridge.core.connectors import open_store
    from embridge.core.connectors.job_lock import job_lock
    from embridge.core.connectors.store_pair import state_key

    good = upgrade["vectors"]["v1"][:30]
    zero, wide = good.copy(), np.hstack([good, good])
    zero[5] = 0.0
    sources = {"good": good, "zero": zero, "wide": wide}
    if kind == "parquet":
        uri, checkpoint = parquet_store(tmp_path, sources)
    else:
        uri, checkpoint = pg_store(fresh_pg_database(request.getfixturevalue("pg_server"), "stops_refused"), sources)

    def migrate(source: str) -> tuple[int, Any, str]:
        return cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", uri(source), "--to", uri("out"),
                   "--batch", "10")

    one_line(migrate("zero"), "point 5 holds an all-zero vector")  # refused by its first batch
    one_line(migrate("wide"), "holds 32-d vectors")  # refused before the lock
    assert checkpoint() is None
    if kind == "parquet":  # nor an empty folder for its lock
        assert not (tmp_path / "pq.embridge").exists()
    one_line(cli(capsys, "check", "--uri", uri("out")), "out")  # no such collection, and no migration of it
    code, out, err = migrate("good")  # a later good migration is not taken for another one's
    assert code == 0 and out["status"] == "completed" and out["written"] == 30, err
    code, checked, err = cli(capsys, "check", "--uri", uri("out"))
    assert code == 0 and checked["state"] == "single" and checked["migration"]["status"] == "complete", err

    store = open_store(uri("out"), "--to")  # a checkpoint whose collection is gone, then refusals of each kind
    try:
        store.drop()
        previous = checkpoint()
        assert previous is not None
        one_line(migrate("zero"), "point 5 holds an all-zero vector")
        one_line(migrate("wide"), "holds 32-d vectors")
        with job_lock(store, state_key(store)):  # the kernel's lock on a local folder, PostgreSQL's own on a server
            one_line(migrate("good"), "another migration is writing")
        assert checkpoint() == previous
    finally:
        store.close()
    code, out, err = migrate("good")  # and the next good one starts afresh
    assert code == 0 and out["status"] == "completed" and out["written"] == 30, err


def test_ctrl_c_during_a_postgresql_migration_prints_one_line_and_the_rerun_resumes(
        upgrade: dict, pg_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A real SIGINT to a real process while it copies into PostgreSQL, three times at different moments."""
    n = 60_000
    vectors = np.random.default_rng(7).standard_normal((n, 16)).astype(np.float32)
    uri, _ = pg_store(fresh_pg_database(pg_server, "stops_sigint"), {"docs": vectors})
    args = ["migrate", "--bundle", str(upgrade["bundle"]), "--from", uri("docs"), "--to", uri("docs_v2"),
            "--batch", "500"]
    for delay in (0.0, 0.15, 0.4):
        code, lines = interrupt_when(args, PROGRESS, delay)
        said = [line for line in lines if line.strip() and not PROGRESS.match(line)]
        assert code == 130 and said == ["embridge: error: interrupted"], (delay, code, said)
    code, out, err = cli(capsys, *args)
    assert code == 0 and out["resumed_from"] > 0 and out["verification"]["ok"], err
    assert out["verification"]["target_count"] == n


def test_psycopg_warnings_are_dropped_only_while_an_interrupt_unwinds(pg_server: str,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """The rollback psycopg tries on the way out of an interrupted call fails while the server is busy; its
    warning is dropped then, and only then."""
    from embridge.core.connectors import open_store

    uri, _ = pg_store(fresh_pg_database(pg_server, "stops_quiet"), {"docs": np.ones((3, 16), np.float32)})
    for stop, logged in ((KeyboardInterrupt, False), (RuntimeError, True)):
        store = open_store(uri("docs"))
        caplog.clear()
        try:
            with caplog.at_level(logging.WARNING), pytest.raises(stop), store.conn.transaction():
                store.conn.pgconn.send_query(b"select pg_sleep(0.2)")  # the server busy, as mid-COPY
                raise stop
        finally:
            store.close()
        warned = [r.getMessage() for r in caplog.records if r.name.startswith("psycopg")]
        assert bool(warned) == logged and all("error ignored in rollback" in w for w in warned), warned
