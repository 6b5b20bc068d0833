"""PostgreSQL names for the pgvector connector: schema-qualified tables, and catalog look-ups by oid.

``?table=NAME`` resolves through the search path, as an unqualified name in SQL does; ``?table=SCHEMA.NAME``
names the table NAME of schema SCHEMA (split at the first dot). A bare name used beside a schema-qualified
table (a view serving as its alias, the collections ``with_collection`` opens) is placed in that table's
schema, so what a migration makes stays beside its source. Every relation is looked up by the oid that
``to_regclass`` gives for its quoted name, so a name is never pasted into SQL text. A table whose own name
holds a dot cannot be named this way (its name would read as SCHEMA.TABLE). Migration checkpoints live in an
``embridge_state`` table of the same schema (see the section on them below).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from embridge.core.connectors.connector import VectorStoreError


def name_parts(name: str, schema: str | None) -> tuple[str, ...]:
    """(schema, table) for ``SCHEMA.TABLE`` or for a bare name beside a schema; (table,) otherwise."""
    if "." in name:
        head, tail = name.split(".", 1)
        return head, tail
    return (schema, name) if schema else (name,)


def identifier(name: str, schema: str | None) -> Any:
    """The relation as a quoted (possibly schema-qualified) SQL identifier."""
    from psycopg import sql

    return sql.Identifier(*name_parts(name, schema))


def regclass_text(conn: Any, name: str, schema: str | None) -> str:
    """The quoted name ``to_regclass`` resolves (``"myschema"."docs"``)."""
    return str(identifier(name, schema).as_string(conn))


def index_metric(conn: Any, name: str, schema: str | None, column: str) -> str | None:
    """The metric of a pgvector index on ``column`` of ``name`` (of the table it shows, for a view) by its operator
    class (vector_ip_ops: inner product...); None without one, or when its indexes disagree."""
    name = view_target(conn, name, schema) or name
    found = {row[0].split("_")[1] for row in conn.execute(
        "select opc.opcname from pg_index i join pg_opclass opc on opc.oid = i.indclass[0] "
        "join pg_attribute a on a.attrelid = i.indrelid and a.attnum = i.indkey[0] "
        "where i.indrelid = to_regclass(%s) and a.attname = %s and opc.opcname ~ '^(vector|halfvec)_[a-z0-9]+_ops$'",
        [regclass_text(conn, name, schema), column]).fetchall()}
    metrics = {{"l2": "l2", "ip": "dot", "cosine": "cosine", "l1": "l1"}.get(op) for op in found}
    return metrics.pop() if len(metrics) == 1 else None


def columns(conn: Any, name: str, schema: str | None) -> list[tuple[str, str]]:
    """(column, type) of the relation, in order; empty when it does not exist."""
    rows = conn.execute(
        "select a.attname, format_type(a.atttypid, a.atttypmod) from pg_attribute a where a.attrelid = "
        "to_regclass(%s) and a.attnum > 0 and not a.attisdropped order by a.attnum",
        [regclass_text(conn, name, schema)]).fetchall()
    return [(r[0], r[1]) for r in rows]


def column_oids(conn: Any, name: str, schema: str | None) -> dict[str, int]:
    """Each column's type oid (a modifier such as varchar(20)'s length is not part of it)."""
    rows = conn.execute(
        "select a.attname, a.atttypid::bigint from pg_attribute a where a.attrelid = to_regclass(%s) "
        "and a.attnum > 0 and not a.attisdropped", [regclass_text(conn, name, schema)]).fetchall()
    return {r[0]: int(r[1]) for r in rows}


def generated_columns(conn: Any, name: str, schema: str | None) -> set[str]:
    """Columns the table computes itself (``generated always as``): a write leaves them out."""
    rows = conn.execute("select a.attname from pg_attribute a where a.attrelid = to_regclass(%s) and a.attnum > 0 "
                        "and not a.attisdropped and a.attgenerated <> ''", [regclass_text(conn, name, schema)])
    return {r[0] for r in rows.fetchall()}


def missing(conn: Any, name: str, schema: str | None) -> str:
    """Why the relation is not there, naming the ``table`` parameter: its schema or the table itself."""
    parts = name_parts(name, schema)
    if len(parts) == 2 and not schema_exists(conn, parts[0]):
        return f"no such schema '{parts[0]}' (?table={name})"
    where = f" in schema '{parts[0]}'" if len(parts) == 2 else ""
    return f"no such table or view '{parts[-1]}'{where} (?table={name})"


def schema_exists(conn: Any, schema: str) -> bool:
    return conn.execute("select 1 from pg_namespace where nspname = %s", [schema]).fetchone() is not None


def relkind(conn: Any, name: str, schema: str | None) -> str | None:
    """pg_class.relkind of the relation ('r' table, 'p' partitioned table, 'v' view...), None when absent."""
    row = conn.execute("select relkind from pg_class where oid = to_regclass(%s)",
                       [regclass_text(conn, name, schema)]).fetchone()
    return str(row[0]) if row else None


def id_nullable(conn: Any, name: str, schema: str | None, column: str) -> bool:
    row = conn.execute("select not attnotnull from pg_attribute where attrelid = to_regclass(%s) and attname = %s",
                       [regclass_text(conn, name, schema), column]).fetchone()
    return bool(row and row[0])


def has_primary_key(conn: Any, name: str, schema: str | None) -> bool:
    return conn.execute("select 1 from pg_index where indrelid = to_regclass(%s) and indisprimary",
                        [regclass_text(conn, name, schema)]).fetchone() is not None


def check_ids(conn: Any, name: str, schema: str | None, column: str, describe: str) -> None:
    """Refuse a table with a NULL id, or an id held by two rows, before its first batch is read (NULLs
    sort last, so a row-by-row refusal would come after everything else was written; pages follow the id,
    'where id > last', so a repeat of a page's last id would be skipped unseen)."""
    from psycopg import sql

    table, key = identifier(name, schema), sql.Identifier(column)
    if id_nullable(conn, name, schema, column) and conn.execute(
            sql.SQL("select exists (select 1 from {} where {} is null)").format(table, key)).fetchone()[0]:
        raise VectorStoreError(f"{describe}: a row has a NULL id (column '{column}'); every point needs an id")
    if id_unique(conn, name, schema, column):
        return
    repeated = conn.execute(sql.SQL("select {} from {} group by 1 having count(*) > 1 limit 1").format(
        key, table)).fetchone()
    if repeated is not None:
        raise VectorStoreError(f"{describe}: the id {repeated[0]!r} appears more than once (column '{column}'); "
                               "every point needs a unique id")


def id_unique(conn: Any, name: str, schema: str | None, column: str) -> bool:
    """A unique index (or primary key) on exactly ``column`` makes its values unique."""
    return conn.execute(
        "select 1 from pg_index i join pg_attribute a on a.attrelid = i.indrelid and a.attnum = i.indkey[0] "
        "where i.indrelid = to_regclass(%s) and i.indisunique and i.indnkeyatts = 1 and i.indpred is null "
        "and i.indexprs is null and a.attname = %s", [regclass_text(conn, name, schema), column]).fetchone() is not None


def view_target(conn: Any, name: str, schema: str | None) -> str | None:
    """The one table a view selects from, named as the connector names collections: ``schema.table`` when the
    connector's table is schema-qualified or the table is not on the search path, else the bare name."""
    rows = conn.execute(
        "select distinct n.nspname, t.relname, pg_table_is_visible(t.oid) from pg_class v "
        "join pg_rewrite r on r.ev_class = v.oid join pg_depend d on d.objid = r.oid "
        "join pg_class t on t.oid = d.refobjid join pg_namespace n on n.oid = t.relnamespace "
        "where v.oid = to_regclass(%s) and v.relkind = 'v' and t.oid <> v.oid",
        [regclass_text(conn, name, schema)]).fetchall()
    if len(rows) != 1:
        return None
    nsp, rel, visible = rows[0]
    return str(rel) if visible and schema is None else f"{nsp}.{rel}"


def view_definition(conn: Any, name: str, schema: str | None) -> str | None:
    """The view's SQL, whitespace folded (None when the name is not a view)."""
    row = conn.execute("select pg_get_viewdef(oid) from pg_class where oid = to_regclass(%s) and relkind = 'v'",
                       [regclass_text(conn, name, schema)]).fetchone()
    return " ".join(str(row[0]).split()) if row else None


def view_extras(conn: Any, name: str, schema: str | None) -> str:
    """What a view holds besides its SQL, which a switch (drop and create) would lose or which would stop the
    drop: grants, options, comment, triggers, rules and the views built on it ('' when none)."""
    row = conn.execute(
        "select coalesce(c.relacl::text, ''), coalesce(c.reloptions::text, ''), "
        "coalesce(obj_description(c.oid, 'pg_class'), ''), "
        "(select coalesce(string_agg(t.tgname, ',' order by t.tgname), '') from pg_trigger t where t.tgrelid = c.oid), "
        "(select coalesce(string_agg(r.rulename, ',' order by r.rulename), '') from pg_rewrite r "
        " where r.ev_class = c.oid and r.rulename <> '_RETURN') "
        "from pg_class c where c.oid = to_regclass(%s) and c.relkind = 'v'",
        [regclass_text(conn, name, schema)]).fetchone()
    if row is None:
        return ""
    labels = ("grants", "options", "comment", "triggers", "rules", "views built on it")
    values = [*row, ",".join(view_dependents(conn, name, schema))]
    return "; ".join(f"{label} {value}" for label, value in zip(labels, values, strict=True) if value)


def view_dependents(conn: Any, name: str, schema: str | None) -> list[str]:
    """The views (and materialized views) that select from this relation: they stop a plain drop of it."""
    rows = conn.execute(
        "select distinct dv.oid::regclass::text from pg_depend d join pg_rewrite r on r.oid = d.objid "
        "join pg_class dv on dv.oid = r.ev_class where d.classid = 'pg_rewrite'::regclass "
        "and d.refobjid = to_regclass(%s) and dv.oid <> d.refobjid order by 1",
        [regclass_text(conn, name, schema)]).fetchall()
    return [str(r[0]) for r in rows]


def replace_view(conn: Any, alias: str, target: str, schema: str | None) -> None:
    """Make ``alias`` a view of all of ``target`` in one transaction: a reader sees the old table or the new one."""
    from psycopg import sql

    with conn.transaction():
        conn.execute(sql.SQL("drop view if exists {}").format(identifier(alias, schema)))
        conn.execute(sql.SQL("create view {} as select * from {}").format(identifier(alias, schema),
                                                                          identifier(target, schema)))


def try_advisory_lock(conn: Any, key: str) -> bool:
    """A session-level advisory lock named by ``key`` (hashed to the lock's 64-bit id): the server
    releases it when the session ends, even when the client was killed."""
    return bool(conn.execute("select pg_try_advisory_lock(hashtextextended(%s, 0))", (key,)).fetchone()[0])


def advisory_unlock(conn: Any, key: str) -> None:
    """Give the lock back; a session that is closed or busy with another command drops it when it ends."""
    import psycopg

    try:
        conn.execute("select pg_advisory_unlock(hashtextextended(%s, 0))", (key,))
    except psycopg.Error:
        pass


def vector_width(conn: Any, table: Any, column: Any, key: Any) -> int | None:
    """The width of the first vector in key order, for a ``vector`` column declared without one (as
    LangChain's tables are): rows of another width are refused as they are read. None: no vectors."""
    from psycopg import sql

    row = conn.execute(sql.SQL("select vector_dims({}) from {} where {} is not null order by {} limit 1")
                       .format(column, table, column, key)).fetchone()
    return int(row[0]) if row else None


# -- migration checkpoints, in an ``embridge_state`` table of the table's own schema ----------------------
# A role may own its schema and have no CREATE on ``public`` (the default since PostgreSQL 15), so what
# Embridge makes for ``?table=SCHEMA.TABLE`` (the shadow, the alias view, this table) goes to SCHEMA; a bare
# table name keeps the search path's ``embridge_state``, as SQL places an unqualified name. Earlier versions
# kept every checkpoint in the search path's table (``public`` as a rule): a key the schema's table lacks is
# read there too, so a migration they started resumes, and the next save moves it beside its table. A
# missing privilege is one line naming the role, the schema or table and the privilege, checked before a
# migration writes.

STATE_TABLE = "embridge_state"
STATE_WRITES = ("SELECT", "INSERT", "UPDATE", "DELETE")


def _state_table(conn: Any, schema: str | None) -> tuple[int, str] | None:
    """(oid, schema) of the ``embridge_state`` the name resolves to (in ``schema``, else the search path's)."""
    row = conn.execute("select c.oid, n.nspname from pg_class c join pg_namespace n on n.oid = "
                       "c.relnamespace where c.oid = to_regclass(%s)",
                       [regclass_text(conn, STATE_TABLE, schema)]).fetchone()
    return (int(row[0]), str(row[1])) if row else None


def _legacy_state(conn: Any, schema: str | None, own: tuple[int, str] | None) -> tuple[int, str] | None:
    """The search path's table, where earlier versions wrote schema-qualified tables' checkpoints too."""
    if schema is None:
        return None
    old = _state_table(conn, None)
    return old if old is not None and old != own else None


def _may(conn: Any, table: tuple[int, str], privilege: str) -> bool:
    return bool(conn.execute("select has_table_privilege(%s::oid, %s)", [table[0], privilege]).fetchone()[0])


def _state_ident(table: tuple[int, str]) -> Any:
    return identifier(STATE_TABLE, table[1])


def _select_state(conn: Any, table: tuple[int, str], key: str) -> dict[str, Any] | None:
    from psycopg import sql

    query = sql.SQL("select state from {} where key = %s").format(_state_ident(table))
    row = conn.execute(query, [key]).fetchone()
    return dict(row[0]) if row else None


def load_state(conn: Any, schema: str | None, key: str, describe: str) -> dict[str, Any] | None:
    """The checkpoint of ``key``; reading creates nothing in the user's database. An earlier version's
    table the role may not read is passed over (a read-only ``check`` or ``import`` must not fail on it)."""
    own = _state_table(conn, schema)
    with denied(conn, describe, schema):
        state = _select_state(conn, own, key) if own is not None else None
    if state is not None:
        return state
    old = _legacy_state(conn, schema, own)
    return _select_state(conn, old, key) if old is not None and _may(conn, old, "SELECT") else None


def save_state(conn: Any, schema: str | None, key: str, state: dict[str, Any] | None, describe: str) -> None:
    """Write (None: remove) the checkpoint in the schema's table, made on first use; the key's row in an
    earlier version's table goes in the same transaction where the role may delete it (else the new row
    hides it)."""
    from psycopg import sql

    own, table = _state_table(conn, schema), identifier(STATE_TABLE, schema)
    old = _legacy_state(conn, schema, own)
    old = old if old is not None and _may(conn, old, "SELECT") and _may(conn, old, "DELETE") else None
    with denied(conn, describe, schema), conn.transaction():
        if old is not None:
            conn.execute(sql.SQL("delete from {} where key = %s").format(_state_ident(old)), [key])
        if state is None:
            if own is not None:
                conn.execute(sql.SQL("delete from {} where key = %s").format(table), [key])
            return
        if own is None:
            conn.execute(sql.SQL("create table if not exists {} (key text primary key, state jsonb not null)")
                         .format(table))
        conn.execute(sql.SQL("insert into {} (key, state) values (%s, %s) on conflict (key) do update set "
                             "state = excluded.state").format(table), [key, json.dumps(state)])


def _role(conn: Any) -> str:
    return str(conn.execute("select current_user").fetchone()[0])


@contextmanager
def denied(conn: Any, describe: str, schema: str | None) -> Iterator[None]:
    """A privilege the server refuses mid-way (one the checks below could not foresee) as one line naming
    the role and schema, not an unexpected error."""
    import psycopg

    try:
        yield
    except psycopg.errors.InsufficientPrivilege as exc:
        where = schema or conn.execute("select current_schema()").fetchone()[0]
        raise VectorStoreError(f"{describe}: role '{_role(conn)}' may not do this in schema '{where}' "
                               f"({str(exc).strip().splitlines()[0]})") from exc


def require_writable(conn: Any, schema: str | None, describe: str, table_exists: Callable[[], bool],
                     key: str) -> None:
    """Before a migration writes anything: the role may use the target's schema, create there what is missing
    (the table, ``embridge_state``; an alias view needs the same CREATE) and write the checkpoints."""
    user = _role(conn)
    name = schema or conn.execute("select current_schema()").fetchone()[0]
    if name is None:
        raise VectorStoreError(f"{describe}: no schema of the search path exists to make the table in; "
                               "name one with ?table=SCHEMA.TABLE")
    fix = f"GRANT {{}} ON SCHEMA {name} TO {user}, or name a table of a schema the role may use " \
        "(?table=SCHEMA.TABLE)"
    if not conn.execute("select has_schema_privilege(%s, 'USAGE')", [name]).fetchone()[0]:
        raise VectorStoreError(f"{describe}: role '{user}' lacks the USAGE privilege on schema '{name}', "
                               f"where the migration makes its table and checkpoints ({fix.format('USAGE')})")
    own, exists = _state_table(conn, schema), table_exists()
    if (own is None or not exists) and not conn.execute("select has_schema_privilege(%s, 'CREATE')",
                                                        [name]).fetchone()[0]:
        what = [w for w, needed in (("the table", not exists),
                                    (f"the checkpoint table {STATE_TABLE}", own is None)) if needed]
        raise VectorStoreError(f"{describe}: role '{user}' lacks the CREATE privilege on schema '{name}', "
                               f"where the migration makes {' and '.join(what)} ({fix.format('CREATE')})")
    grant = f"GRANT {', '.join(STATE_WRITES)} ON {{}}.{STATE_TABLE} TO {user}"
    for need in STATE_WRITES if own is not None else ():
        if not _may(conn, own, need):
            raise VectorStoreError(f"{describe}: role '{user}' lacks the {need} privilege on table "
                                   f"{own[1]}.{STATE_TABLE}, which holds the migration checkpoints "
                                   f"({grant.format(own[1])})")
    old = _legacy_state(conn, schema, own)
    if (exists and old is not None and not _may(conn, old, "SELECT")
            and (own is None or _select_state(conn, own, key) is None)):
        raise VectorStoreError(f"{describe}: exists, and its checkpoint may be in {old[1]}.{STATE_TABLE}, "
                               f"where earlier versions kept it, which role '{user}' may not read; "
                               f"{grant.format(old[1])} to resume, or choose another target")
