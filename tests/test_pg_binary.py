"""Reading pgvector tables: the binary-COPY page path against the row-by-row path, on the real server.

Integer keys take the fast path (one binary COPY per page decoded by numpy); a page with a NULL
vector, and tables keyed by text, are read row by row. Both must give the same ids, vectors,
payloads and resume cursors.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from embridge.core.connectors import open_store, pg_binary
from embridge.core.connectors.connector import VectorStoreError
from tests.store_fixtures import fresh_pg_database

DIM = 7


def _fill(base: str, table: str, key_type: str, keys: list, vectors: list, labels: list) -> str:
    import psycopg
    from pgvector.psycopg import register_vector

    with psycopg.connect(base, autocommit=True) as conn:
        register_vector(conn)
        conn.execute(f"create table {table} (id {key_type} primary key, embedding vector({DIM}), label text, "
                     "score double precision)")
        with conn.cursor() as cur, cur.copy(f"copy {table} (id, embedding, label, score) from stdin") as cp:
            for k, v, lab in zip(keys, vectors, labels, strict=True):
                cp.write_row([k, v, lab, None if lab is None else float(len(lab))])
    return f"{base}&column=embedding&table={table}"


def _read(uri: str, batch: int, cursor: object = None) -> Iterator:
    store = open_store(uri)
    try:
        yield from store.read_batches(batch, cursor)
    finally:
        store.close()


@pytest.fixture(scope="module")
def pg_base(pg_server: str) -> str:
    return fresh_pg_database(pg_server, "pages")


def _table(rng: np.random.Generator, n: int) -> tuple[list[int], np.ndarray, list[str | None]]:
    keys = sorted(rng.choice(10**12, size=n, replace=False).tolist())
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    labels = [None if i % 5 == 0 else f"l{i % 3}" for i in range(n)]
    return keys, vectors, labels


@pytest.mark.parametrize("key_type", ["bigint", "integer"])
def test_pages_match_the_row_by_row_reader_and_resume_from_their_cursor(pg_base: str, key_type: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    keys, vectors, labels = _table(rng, 1000)
    if key_type == "integer":
        keys = [k % 2_000_000_000 for k in keys]
        keys = sorted(set(keys))
        vectors, labels = vectors[:len(keys)], labels[:len(keys)]
    uri = _fill(pg_base, f"t_{key_type}", key_type, keys, list(vectors), labels)
    decoded = []
    real_decode = pg_binary.decode_page
    monkeypatch.setattr(pg_binary, "decode_page", lambda data, dim: decoded.append(dim) or real_decode(data, dim))
    fast = list(_read(uri, 300))
    assert decoded == [DIM] * 4  # every page came through the COPY decoder
    assert [len(b) for b in fast] == [300, 300, 300, len(keys) - 900]
    got_ids = [i for b in fast for i in b.ids]
    assert got_ids == keys and all(type(i) is int for i in got_ids)
    np.testing.assert_array_equal(np.concatenate([b.vectors for b in fast]), vectors)
    assert [p["label"] for b in fast for p in b.payloads] == labels
    assert fast[1].payloads[3]["score"] == (None if labels[303] is None else float(len(labels[303])))
    resumed = list(_read(uri, 300, fast[0].cursor))
    assert [i for b in resumed for i in b.ids] == keys[300:]

    monkeypatch.setattr(pg_binary, "INTEGER_KEYS", ())  # the row-by-row reader, for comparison
    slow = list(_read(uri, 300))
    assert [(b.ids, b.payloads, b.cursor) for b in slow] == [(b.ids, b.payloads, b.cursor) for b in fast]
    np.testing.assert_array_equal(np.concatenate([b.vectors for b in slow]), vectors)


def test_a_page_with_a_null_vector_is_read_row_by_row_and_text_keys_work(pg_base: str) -> None:
    rng = np.random.default_rng(2)
    keys, vectors, labels = _table(rng, 50)
    uri = _fill(pg_base, "t_null", "bigint", keys, list(vectors), labels)
    import psycopg

    with psycopg.connect(pg_base, autocommit=True) as conn:
        conn.execute("update t_null set embedding = null where id = %s", [keys[7]])
    assert pg_binary.decode_page(b"not a copy stream", DIM) is None
    pages = _read(uri, 5)
    assert next(pages).ids == keys[:5]  # a page without the NULL row still takes the fast path
    pages.close()
    with pytest.raises(VectorStoreError, match=f"id={keys[7]}.*NULL"):
        list(_read(uri, 20))
    text_uri = _fill(pg_base, "t_text", "text", [f"k{k}" for k in keys], list(vectors), labels)
    batches = list(_read(text_uri, 20))
    assert [i for b in batches for i in b.ids] == sorted(f"k{k}" for k in keys)
    by_key = {f"k{k}": v for k, v in zip(keys, vectors, strict=True)}
    np.testing.assert_array_equal(np.concatenate([b.vectors for b in batches]),
                                  np.stack([by_key[i] for b in batches for i in b.ids]))
