"""PostgreSQL names for the pgvector connector: schema-qualified tables, and catalog look-ups by oid.

``?table=NAME`` resolves through the search path, as an unqualified name in SQL does; ``?table=SCHEMA.NAME``
names the table NAME of schema SCHEMA (split at the first dot). A bare name used beside a schema-qualified
table (a view serving as its alias, the collections ``with_collection`` opens) is placed in that table's
schema, so what a migration makes stays beside its source. Every relation is looked up by the oid that
``to_regclass`` gives for its quoted name, so a name is never pasted into SQL text. A table whose own name
holds a dot cannot be named this way (its name would read as SCHEMA.TABLE).
"""

from __future__ import annotations

from typing import Any


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


def columns(conn: Any, name: str, schema: str | None) -> list[tuple[str, str]]:
    """(column, type) of the relation, in order; empty when it does not exist."""
    rows = conn.execute(
        "select a.attname, format_type(a.atttypid, a.atttypmod) from pg_attribute a where a.attrelid = "
        "to_regclass(%s) and a.attnum > 0 and not a.attisdropped order by a.attnum",
        [regclass_text(conn, name, schema)]).fetchall()
    return [(r[0], r[1]) for r in rows]


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


def pg_type(value: Any) -> str:
    """The column type a payload value of this Python type is stored in."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "bigint"
    if isinstance(value, float):
        return "double precision"
    return "text"


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
