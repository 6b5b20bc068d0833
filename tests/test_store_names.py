"""Collection, table and alias names from store URIs are refused before any store is opened.

Embedded stores make files from these names, so a name holding a path part would write outside
the store; each refusal is one line naming the option and the name, exit 1, and nothing created.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from store_fixtures import cli, fct_upgrade, fill_source


@pytest.fixture(scope="module")
def upgrade(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return fct_upgrade(tmp_path_factory.mktemp("store-names"))


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


BAD = {
    "lancedb": ["lancedb://{o}/ldb?table=q/../../../PWNED", "lancedb://{o}/ldb?table=../evil",
                "lancedb://{o}/ldb?table=a%20b", "lancedb://{o}/ldb?table=ok&alias=../a",
                "lancedb://{o}/ldb?table=" + "t" * 201],
    # a name too long for the file names made from it failed on the checkpoint's lock file, named as such
    "qdrant": ["qdrant://{o}/qd?collection=../x2", "qdrant://{o}/qd?collection=.hidden",
               "qdrant://{o}/qd?collection=a%0Ab", "qdrant://{o}/qd?collection=" + "q" * 201],
    "chroma": ["chroma://{o}/chr?collection=../x2", "chroma://{o}/chr?collection=ab",
               "chroma://{o}/chr?collection=_starts_badly", "chroma://{o}/chr?collection=a%20b%20c"],
    "parquet": ["parquet://{o}/pq/..", "parquet://{o}/pq/.hidden", "parquet://{o}/pq/ok?alias=x/y",
                "parquet://{o}/pq/" + "p" * 201],
}


@pytest.mark.parametrize(("table", "said"), [("b" * 64, "has a part of 64 bytes"),
                                             ("public." + "é" * 32, "has a part of 64 bytes")])
def test_a_postgresql_name_the_server_would_cut_is_refused(table: str, said: str) -> None:
    """PostgreSQL cuts names to 63 bytes: two long names sharing their first 63 bytes are one table."""
    from embridge.core.connectors import StoreURI
    from embridge.core.errors import InputError

    with pytest.raises(InputError, match=f"{said}; PostgreSQL names hold at most 63"):
        StoreURI.parse(f"postgresql://localhost/db?table={table}", "--to")
    assert StoreURI.parse(f"postgresql://localhost/db?table=public.{'b' * 63}", "--to").param("table")


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_store_names_are_refused_and_create_nothing(kind: str, upgrade: dict, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    v1 = upgrade["vectors"]["v1"]
    source = fill_source("parquet", tmp_path / "src", list(range(len(v1))), v1, upgrade["labels"])
    out = tmp_path / "out"
    out.mkdir()
    before = files(tmp_path)
    bundle = str(upgrade["bundle"])
    for uri in (u.format(o=out) for u in BAD[kind]):
        name = uri.split("=")[-1] if "?" in uri else uri.rsplit("/", 1)[-1]
        name = unquote(name)
        runs = [("--to", ["migrate", "--bundle", bundle, "--from", source.source, "--to", uri]),
                ("--from", ["migrate", "--bundle", bundle, "--from", uri, "--to", source.target]),
                ("--uri", ["check", "--uri", uri])]
        if kind in ("lancedb", "parquet"):  # the stores transform writes
            runs.append(("--to", ["transform", "--bundle", bundle, "--from", source.source, "--to", uri]))
        for option, args in runs:
            code, _, err = cli(capsys, *args)
            assert code == 1 and err.count("\n") == 1, (args, err)
            assert f"{option}: " in err and repr(name) in err, (args, err)
        assert files(tmp_path) == before, uri


def test_two_synonyms_naming_different_collections_are_refused(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """``table`` and ``collection`` name the same thing: a URI giving both, differently, is ambiguous."""
    uri = f"lancedb://{tmp_path}/db?table=docs&collection=big"
    code, _, err = cli(capsys, "check", "--uri", uri)
    assert code == 1 and err.count("\n") == 1 and "table=docs" in err and "collection=big" in err
    assert not (tmp_path / "db").exists()


@pytest.mark.parametrize("scheme", ["parquet", "lancedb", "faiss"])
def test_two_slashes_where_three_are_meant_name_the_host_and_the_fix(scheme: str, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """``parquet://data/x`` parses as host 'data', path '/x': for a local store that is a typo for
    ``parquet:///data/x``, refused with the spelling that was meant, never read as /x."""
    uri = f"{scheme}://{str(tmp_path).lstrip('/')}/db" + ("?table=t" if scheme == "lancedb" else "")
    code, _, err = cli(capsys, "check", "--uri", uri)
    host = str(tmp_path).lstrip("/").split("/")[0]
    assert code == 1 and err.count("\n") == 1 and f"names the host '{host}'" in err
    assert f"{scheme}:///{str(tmp_path).lstrip('/')}/db" in err and "three slashes" in err
