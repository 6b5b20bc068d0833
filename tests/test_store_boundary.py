"""The workspace database is reached only through Workspace methods, and the gallery has one definition."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

from embridge.core.overview import gallery_splits, gallery_text, workspace_overview
from embridge.core.store import Workspace
from embridge.core.store.items import QUERY_SPLIT, in_gallery, item_namespace

ROOT = Path(__file__).resolve().parents[1]
SQL_CALLS = {"execute", "executemany", "executescript", "query"}
# A PostgreSQL collection is a user's vector store, not the workspace: its client speaks SQL itself.
EXTERNAL_DATABASES = {"core/connectors/pgvector_store.py", "core/connectors/pg_catalog.py",
                      "core/connectors/pg_columns.py",
                      "core/connectors/qdrant_local.py"}  # reads an embedded Qdrant folder's own SQLite file


def _sources() -> list[Path]:
    files = [p for folder in ("core", "app") for p in sorted((ROOT / folder).rglob("*.py"))]
    return [p for p in files if not p.relative_to(ROOT).as_posix().startswith("core/store/")]


def raw_database_uses(source: str) -> list[str]:
    """Where ``source`` runs SQL itself (``x.execute(...)``, ``x.query(...)``) or reaches ``ws.db``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SQL_CALLS:
            found.append(f"line {node.lineno}: .{node.func.attr}(...)")
        if (isinstance(node, ast.Attribute) and node.attr == "db"
                and not (isinstance(node.value, ast.Name) and node.value.id == "self")):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_scan_finds_raw_sql_and_database_handles() -> None:
    code = ("def f(ws, conn):\n    ws.db.execute('select 1')\n    conn.query('select 2')\n"
            "    with ws.transaction() as db:\n        db.executemany('x', [])\n")
    assert len(raw_database_uses(code)) == 4
    assert raw_database_uses("def f(ws):\n    return ws.gallery_ids()\n") == []


def test_no_raw_sql_outside_the_store() -> None:
    offenders = {}
    for path in _sources():
        rel = path.relative_to(ROOT).as_posix()
        if rel in EXTERNAL_DATABASES:
            continue
        uses = raw_database_uses(path.read_text(encoding="utf-8"))
        if uses:
            offenders[rel] = uses
    assert offenders == {}, f"raw SQL outside core/store (add a Workspace method instead): {offenders}"


def _mixed_workspace(path: Path) -> tuple[Workspace, dict[str, list[int]]]:
    ws = Workspace.create(path)
    splits = {"gallery": 3, "train": 2, None: 2, "mine": 1, QUERY_SPLIT: 4}
    ids: dict[str, list[int]] = {}
    for split, n in splits.items():
        records = [{"key": f"{split}-{i}", "split": split} for i in range(n)]
        ids[str(split)] = ws.add_items(records)
    return ws, ids


def test_the_gallery_is_every_item_but_the_queries(tmp_path: Path) -> None:
    ws, ids = _mixed_workspace(tmp_path / "ws")
    with ws:
        queries = sorted(ids[QUERY_SPLIT])
        gallery = sorted(i for split, part in ids.items() if split != QUERY_SPLIT for i in part)
        assert ws.gallery_ids().tolist() == gallery  # the named split "gallery" is only 3 of the 8
        assert ws.query_ids().tolist() == queries
        assert len(gallery) == 8 and ws.item_ids("gallery").size == 3
        counts = workspace_overview(ws)["items"]
        assert sum(gallery_splits(counts).values()) == len(gallery)
        assert gallery_text(counts).startswith(f"gallery: {len(gallery)} items")
        assert [in_gallery(s) for s in ("gallery", "train", None, "", "mine", QUERY_SPLIT)] == [True] * 5 + [False]
        assert item_namespace(QUERY_SPLIT) == "query" and item_namespace(None) == "doc"
        assert ws.keys_of(np.array(queries[::-1])) == [f"query-{i}" for i in range(4)][::-1]
        assert ws.gallery_count() == len(gallery)
        some = np.array(sorted(gallery[::2] + queries[1:3]), dtype=np.int64)
        assert ws.gallery_among(some).tolist() == sorted(gallery[::2])
        ws.add_model("m", "old", {"kind": "vectors", "dim": 2}, None)
        ws.add_vector_set("m", some.tolist(), np.random.default_rng(0).standard_normal((len(some), 2)).astype(np.float32))
        assert ws.gallery_ids("m").tolist() == sorted(gallery[::2])  # the model's items less its queries


def split_comparisons(source: str) -> list[str]:
    """Where ``source`` decides gallery membership itself: a split compared with the query split."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare) and any(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops):
            sides = [node.left, *node.comparators]
            names = [ast.unparse(s) for s in sides]
            if any("split" in n.lower() for n in names) and any(
                    n in ("QUERY_SPLIT", "'query'") for n in names):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_no_module_defines_the_gallery_again() -> None:
    assert split_comparisons("def f(split):\n    return split != 'query'\n")
    offenders = {p.relative_to(ROOT).as_posix(): split_comparisons(p.read_text(encoding="utf-8"))
                 for p in _sources()}
    assert {k: v for k, v in offenders.items() if v} == {}, "use Workspace.gallery_ids or embridge.core.store.items.in_gallery"
