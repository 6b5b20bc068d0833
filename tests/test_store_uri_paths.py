"""Store URIs name what the user meant. A percent-encoded path (``my%20dir%2025%25``) opens the folder whose
name holds the space and the '%', as RFC 3986 reads it, and query values are decoded the same way ('+'
stays '+'); ``table=SCHEMA.TABLE`` names a table of a PostgreSQL schema.

Each store family is migrated, checked and imported through such a URI; everything lands in the folder (or
schema) the user named, and nothing is made under the still-encoded name (or in another schema).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from store_fixtures import (
    cli,
    fct_upgrade,
    fill_source,
    one_line,
    pg_schema_source,
    read_all,
)

from embridge.core.connectors.connector import StoreURI, encode_query

FOLDER = "my dir 25%"  # a space, and a '%' that is not the start of an escape


@pytest.fixture(scope="module")
def upgrade(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return fct_upgrade(tmp_path_factory.mktemp("store-uri-paths"))


def encoded(uri: str) -> str:
    """``uri`` with its path percent-encoded (the scheme, query and '/' as they are)."""
    scheme, rest = uri.split(":///", 1)
    path, sep, query = rest.partition("?")
    return f"{scheme}:///{quote(path)}{sep}{query}"



@pytest.mark.parametrize("kind", ["parquet", "lancedb", "qdrant", "chroma"])
def test_a_percent_encoded_path_opens_the_folder_with_the_space_and_the_percent(
        kind: str, upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    v1 = upgrade["vectors"]["v1"][:60]
    root = tmp_path / FOLDER
    case = fill_source(kind, root, list(range(len(v1))), v1, upgrade["labels"][:60])
    source, target = encoded(case.source), encoded(case.target)
    assert "%20" in source and "%25" in source and " " not in source

    code, out, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", source, "--to", target,
                         "--batch", "25")
    assert code == 0 and out["written"] == 60 and out["verification"]["ok"], err
    assert len(read_all(case.target)) == 60  # the shadow is in the folder named with the space and the '%'
    code, checked, err = cli(capsys, "check", "--uri", target)
    assert code == 0 and checked["count"] == 60 and checked["migration"]["status"] == "complete", err

    ws = tmp_path / "ws"
    assert cli(capsys, "init", "--workspace", str(ws))[0] == 0
    code, imported, err = cli(capsys, "import", "--workspace", str(ws), "--from", source, "--model", "m")
    assert code == 0 and imported["new_items"] == 60, err
    assert sorted(p.name for p in tmp_path.iterdir()) == [FOLDER, "ws"]  # nothing under an encoded name
    assert not [p for p in tmp_path.rglob("*%2*")]


def test_a_faiss_index_in_a_folder_with_a_space_and_a_percent(upgrade: dict, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    import faiss

    v1 = np.ascontiguousarray(upgrade["vectors"]["v1"][:30], dtype=np.float32)
    (tmp_path / FOLDER).mkdir()
    index = faiss.IndexFlatIP(v1.shape[1])
    index.add(v1)
    faiss.write_index(index, str(tmp_path / FOLDER / "gallery.faiss"))
    code, checked, err = cli(capsys, "check", "--uri", encoded(f"faiss://{tmp_path / FOLDER / 'gallery.faiss'}"))
    assert code == 0 and checked["count"] == 30, err


def test_query_values_are_decoded_once_and_plus_stays_plus() -> None:
    parsed = StoreURI.parse("postgresql://u@/db?host=/run/my%20sock%25&table=a+b&sslmode=disable")
    assert parsed.params == {"host": "/run/my sock%", "table": "a+b", "sslmode": "disable"}
    assert StoreURI.parse(f"postgresql://u@/db?{encode_query(parsed.params)}").params == parsed.params
    assert StoreURI.parse("parquet:///data/50%off/docs").path == "/data/50%off/docs"  # not an escape: kept
    assert StoreURI.parse("lancedb:///data/a%2520b?table=docs").path == "/data/a%20b"  # decoded once only


@pytest.mark.parametrize(("uri", "needle"), [("parquet:///data/a#b/docs", "holds '#'"),
                                             ("parquet:///data/a%00b/docs", "%00")])
def test_a_hash_or_nul_in_a_local_uri_is_refused_by_name(uri: str, needle: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "check", "--uri", uri)
    one_line(code, err, "--uri", needle)


def test_a_schema_qualified_postgresql_table_is_imported_migrated_switched_and_rolled_back(
        upgrade: dict, tmp_path: Path, pg_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    import psycopg

    v1, labels = upgrade["vectors"]["v1"], upgrade["labels"]
    n = len(v1)
    # public tables named like the alias and the source
    base = pg_schema_source(pg_server, "uri_schemas", upgrade, tmp_path, "myschema", "create table docs_live (k int)")
    fill_source("pgvector", tmp_path, list(range(5)), v1[:5], labels[:5], pg_base=base, name="docs")

    def uri(table: str) -> str:
        return f"{base}&column=embedding&table={table}"

    ws = tmp_path / "ws"
    assert cli(capsys, "init", "--workspace", str(ws))[0] == 0
    code, imported, err = cli(capsys, "import", "--workspace", str(ws), "--from", uri("myschema.docs"), "--model", "m")
    assert code == 0 and imported["new_items"] == n, err
    code, out, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", uri("myschema.docs"),
                         "--to", uri("myschema.docs_v2"), "--switch", "--alias", "docs_live", "--batch", "100")
    assert code == 0 and out["written"] == n and out["switched"] and out["verification"]["ok"], err
    with psycopg.connect(base, autocommit=True) as conn:
        kinds = dict(conn.execute("select n.nspname || '.' || c.relname, c.relkind::text from pg_class c join "
                                  "pg_namespace n on n.oid = c.relnamespace where c.relname like 'docs%' and "
                                  "c.relkind in ('r', 'v')").fetchall())
    assert kinds == {"myschema.docs": "r", "myschema.docs_v2": "r", "myschema.docs_live": "v", "public.docs": "r",
                     "public.docs_live": "r"}  # the shadow and its alias beside the source; public untouched
    code, checked, err = cli(capsys, "check", "--uri", uri("myschema.docs_live"))
    assert code == 0 and checked["serves"] == "myschema.docs_v2" and checked["count"] == n, err
    code, back, err = cli(capsys, "rollback", "--to", uri("myschema.docs") + "&alias=docs_live")
    assert code == 0 and back["changed"] and back["previous"] == "myschema.docs_v2", err
    code, checked, err = cli(capsys, "check", "--uri", uri("myschema.docs_live"))
    assert code == 0 and checked["serves"] == "myschema.docs" and checked["state"] == "single", err  # as rollback reads it
    assert checked["versions"] == back["serves"]

    for table, needle in (("nosuch.docs", "no such schema 'nosuch' (?table=nosuch.docs)"),
                          ("myschema.nope", "no such table or view 'nope' in schema 'myschema' (?table=myschema.nope)")):
        code, _, err = cli(capsys, "check", "--uri", uri(table))
        one_line(code, err, needle)
        code, _, err = cli(capsys, "import", "--workspace", str(ws), "--from", uri(table), "--model", "m2")
        one_line(code, err, needle)
    code, _, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", uri("myschema.docs"),
                       "--to", uri("nosuch.docs_v2"))
    one_line(code, err, "no such schema 'nosuch' (?table=nosuch.docs_v2)")
    with psycopg.connect(base, autocommit=True) as conn:
        keys = [r[0] for r in conn.execute("select key from myschema.embridge_state order by 1").fetchall()]
        public = conn.execute("select to_regclass('public.embridge_state')").fetchone()[0]
    assert keys == ["alias-myschema.docs_live", "migrate-myschema.docs_v2"]  # the refusal recorded nothing
    assert public is None  # the checkpoints stay in the table's own schema


@pytest.mark.parametrize("other", [
    "qdrant:////{root}/db?collection=docs",  # four slashes: the path '//…', which POSIX may read apart
    "qdrant:///{root}/./db/?collection=docs",
    "qdrant:///{root}/link?collection=docs",  # a link to the folder
])
def test_one_store_has_one_place_however_its_local_path_is_written(tmp_path: Path, other: str) -> None:
    (tmp_path / "db").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "db")
    first = StoreURI.parse(f"qdrant:///{tmp_path}/db?collection=docs")
    second = StoreURI.parse(other.format(root=str(tmp_path).lstrip("/")))
    assert second.place() == first.place() == ("qdrant", "", str((tmp_path / "db").resolve()))


def test_one_server_has_one_place_whatever_its_host_case_credentials_or_trailing_slash() -> None:
    places = {StoreURI.parse(uri).place() for uri in (
        "postgresql://alice:secret@DB.example.org:5432/shop?table=docs",
        "postgres://bob@db.example.org:5432/shop/?table=docs",
        "postgresql://db.example.org/shop?table=docs",  # libpq's default port
        "postgresql:///shop?host=db.example.org&table=docs",  # the host as a libpq parameter
        "postgresql://elsewhere:5440/shop?host=db.example.org&port=5432")}  # which libpq takes over the URI's
    assert places == {("postgresql", "db.example.org", "/shop")}
    assert StoreURI.parse("postgresql://db.example.org:5433/shop").place() not in places
    assert StoreURI.parse("postgresql:///?host=db.example.org&dbname=shop").place() in places  # libpq's dbname
    assert StoreURI.parse("postgresql:///?host=db.example.org&dbname=shop2").place() not in places
    assert StoreURI.parse("postgresql:///shop?host=/run/PG").place() == ("postgresql", "/run/PG", "/shop")
    assert {StoreURI.parse(f"qdrant://q.example.org{port}?collection=docs").place() for port in ("", ":6333")} == {
        ("qdrant", "q.example.org", "")}
    assert StoreURI.parse("qdrant://q.example.org:6334?collection=docs").place()[1] == "q.example.org:6334"


def test_a_second_import_of_one_store_under_another_spelling_is_refused_as_busy(tmp_path: Path) -> None:
    """The import lock is keyed by the store's place: 'qdrant:////x' or a server's upper-case host took
    another lock, so two imports of one store could run at once and remove each other's items."""
    from embridge.core.connectors.import_lock import one_import_of
    from embridge.core.errors import WorkspaceBusyError

    (tmp_path / "ws" / "vectors").mkdir(parents=True)
    (tmp_path / "db").mkdir()
    first = StoreURI.parse(f"qdrant:///{tmp_path}/db?collection=docs")
    second = StoreURI.parse(f"qdrant:////{tmp_path}/db/?collection=docs")
    with one_import_of(tmp_path / "ws", first, "docs"):
        with pytest.raises(WorkspaceBusyError, match="another process is importing qdrant:////"):
            with one_import_of(tmp_path / "ws", second, "docs"):
                pass
        with one_import_of(tmp_path / "ws", first, "other"):  # another collection of the store: no wait
            pass
    with one_import_of(tmp_path / "ws", second, "docs"):  # let go: the next import runs
        pass


def test_secrets_are_masked_however_they_are_written() -> None:
    """A password with an unencoded '@', a parameter name percent-encoded (readers decode it), a key before
    a Qdrant host, and libpq's own message quoting the password: none of them is shown."""
    from embridge.core.credentials import hidden, masked, scrubbed
    from embridge.core.errors import InputError

    assert masked("postgresql://me:p@ss@db/x?table=t") == "postgresql://me:***@db/x?table=t"
    assert masked("postgresql://me@db/x?table=t&pass%77ord=s3cret&sslkey=/k.pem") == \
        "postgresql://me@db/x?table=t&pass%77ord=***&sslkey=***"
    assert masked("postgresql://me@db/x?application_name=a:b@c&table=t") == \
        "postgresql://me@db/x?application_name=a:b@c&table=t"  # no password: nothing hidden
    # only the secret goes: an '@' in the query or a 'key=' folder in the path leaves two stores two
    stores = ("postgresql://me:pw@db:5432/v?table={}&application_name=etl@box", "parquet:///d/R&D/key={}",
              "lancedb:///d/R&D/token={}/db?table=t", "postgresql://me:pw@db:5432?dbname=v&table={}&app=etl@box",
              "postgresql://[::1]:5432?dbname=v&table={}@y", "postgresql://me@db?dbname=v&x=a@b&password=pw&t={}")
    for uri in stores:
        assert masked(uri.format("a")) != masked(uri.format("b")) and "pw" not in masked(uri.format("a"))
    # printed: a password written with its '/' unencoded (base64) is no working address, and is hidden
    assert hidden("postgresql://me:Ab3/xY+z@db:5432/v?table=a") == "postgresql://me:***@db:5432/v?table=a"
    assert hidden("error: qdrant://Ab3/xYkey@h:6333?collection=c failed") == "error: qdrant://***@h:6333?collection=c failed"
    assert hidden("postgresql://me@db/v?table=a") == "postgresql://me@db/v?table=a"  # a user name is no secret
    assert hidden("postgresql://me:p?w@db/v?table=a") == "postgresql://me:***@db/v?table=a"  # an unencoded '?'
    assert hidden("postgresql://db/v?application_name=a@b") == "postgresql://db/v?application_name=a@b"
    assert hidden("parquet:///data/B@1/out") == "parquet:///data/B@1/out"  # a local path's '@' is the path's
    assert hidden("postgresql://me@db/v?password=SECab#cd&table=a") == "postgresql://me@db/v?password=***&table=a"
    assert scrubbed('invalid URI query parameter: "cdSEC"', "postgresql://db/v?password=ab&cdSEC") == \
        'invalid URI query parameter: "***"'  # a password's unencoded '&' split it into a parameter
    with pytest.raises(InputError, match="names a user or key before its path") as refused:
        StoreURI.parse("parquet://me:SECRETPW@/data/ds", "--from")
    assert "SECRETPW" not in str(refused.value)
    assert scrubbed("host 'ss'", "postgresql://me:pa@ss:word9@h/v") == "host '***'"
    assert masked("qdrant://K3y@h?collection=c") == "qdrant://***@h?collection=c"
    assert scrubbed("failed to resolve host 'XYZ5@127.0.0.1'", "postgresql://me:sek@XYZ5@127.0.0.1/v") == \
        "failed to resolve host '***@127.0.0.1'"  # libpq reads a password's unencoded '@' as the host's start
    said = 'invalid percent-encoded token: "s3cr%zzet"'
    assert scrubbed(said, "postgresql://me:s3cr%zzet@db/x") == 'invalid percent-encoded token: "***"'
    for uri in ("qdrant://user:QdKey123@q.example.org?collection=docs", "chroma://ChTok456@c.example.org?collection=docs"):
        parsed = StoreURI.parse(uri)
        assert "Key123" not in parsed.shown and "Tok456" not in parsed.shown
        with pytest.raises(InputError, match="takes no user or key before the host") as refused:
            parsed.server(6333)
        assert "Key123" not in str(refused.value) and "Tok456" not in str(refused.value)


def test_the_default_model_of_a_collection_with_a_space_in_its_name_is_a_valid_name(
        upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --model the model is named after the collection: 'My Docs-vectors' was refused as a bad
    --model, which the user had not given."""
    from store_fixtures import parquet_dataset

    source = parquet_dataset(tmp_path / "data" / "My Docs é", upgrade["vectors"]["v1"][:20])
    ws = tmp_path / "ws"
    assert cli(capsys, "init", "--workspace", str(ws))[0] == 0
    code, imported, err = cli(capsys, "import", "--workspace", str(ws), "--from", source)
    assert code == 0 and imported["model"] == "My-Docs-e-vectors" and imported["new_items"] == 20, err


def test_a_librarys_warning_is_one_line_beside_the_error(tmp_path: Path) -> None:
    """qdrant-client warns that an API key goes over plain http: Python printed it on two lines (file, line
    and source), beside the command's one error line."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "QDRANT_API_KEY": "k3y-not-shown"}
    env.pop("EMBRIDGE_DEBUG", None)
    done = subprocess.run([sys.executable, "-m", "embridge.core.cli.main", "check", "--uri",
                           "qdrant://127.0.0.1:1?collection=docs"], capture_output=True, text=True, env=env,
                          timeout=120, cwd=tmp_path)
    lines = done.stderr.splitlines()
    assert done.returncode == 1 and len(lines) == 2, done.stderr
    assert lines[0] == "WARNING: Api key is used with an insecure connection."
    assert lines[1].startswith("embridge: error: qdrant://127.0.0.1:1?collection=docs: cannot open the Qdrant store")
    assert "k3y" not in done.stderr + done.stdout
