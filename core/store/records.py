"""Runs, adapters, reports and bundles: the workspace's history of what was done.

A run is any recorded job (train, embed, report, export). It is 'running' while its process lives;
one whose process died without finishing shows as 'interrupted', so a restarted app or a second
command tells the user what happened instead of showing a job that never ends.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from embridge.core.errors import IntegrityError, StoreError
from embridge.core.l2 import INPUT_POLICY_KEY, layer_input_normalised
from embridge.core.store.file_checks import stored_file_stat
from embridge.core.store.files import atomic_copy, sha256_file
from embridge.core.store.rows import decode, encode, now_iso, pid_alive

FINAL_STATUSES = ("completed", "failed", "cancelled", "interrupted")

RUN_KINDS = ("train", "report", "export", "embed", "backfill")  # what a run row records


class RecordsMixin:
    """Methods of :class:`embridge.core.store.Workspace` for runs and their artifacts."""

    root: Path

    # -- runs -------------------------------------------------------------------------------
    def start_run(self, kind: str, method: str | None = None, config: dict | None = None) -> int:
        if kind not in RUN_KINDS:
            raise StoreError(f"{self.root}: unknown run kind {kind!r} (kinds: {', '.join(RUN_KINDS)})")
        row = {"kind": kind, "method": method, "status": "running", "config": config or {},
               "metrics": {}, "epochs": [], "started": now_iso(), "pid": os.getpid(),
               "host": socket.gethostname()}
        with self.transaction():
            for table in ("runs", "models", "vector_sets", "adapters"):  # the small tables a job's record touches,
                # every page read (not an index's): a damaged one fails now, not after the job's work
                self.db.execute(f"select count(*) from {table} not indexed").fetchone()
            return int(self.db["runs"].insert(encode(row)).last_pk)

    def update_run(self, run_id: int, **fields: Any) -> None:
        with self.transaction():
            if not self.db.execute("select 1 from runs where id = ?", [run_id]).fetchone():
                raise StoreError(f"{self.root}: no run with id {run_id}")
            self.db["runs"].update(run_id, encode(fields))

    def finish_run(self, run_id: int, status: str, *, metrics: dict | None = None,
                   error: str | None = None, **fields: Any) -> None:
        if status not in FINAL_STATUSES:
            raise ValueError(f"unknown final status {status}")
        run = self.run(run_id)
        started = run.get("started")
        duration = fields.pop("duration_s", None)
        if duration is None and started:
            from datetime import datetime

            duration = (datetime.fromisoformat(now_iso()) - datetime.fromisoformat(started)).total_seconds()
        update = {"status": status, "finished": now_iso(), "error": error, "duration_s": duration, **fields}
        if metrics is not None:
            update["metrics"] = metrics
        self.update_run(run_id, **update)

    def has_run(self, run_id: int) -> bool:
        return self.db.execute("select 1 from runs where id = ?", [run_id]).fetchone() is not None

    def run(self, run_id: int) -> dict[str, Any]:
        rows = list(self.db.query("select * from runs where id = ?", [run_id]))
        if not rows:
            raise StoreError(f"{self.root}: no run with id {run_id}")
        return self._with_liveness(decode(rows[0]))

    def runs(self, kind: str | None = None) -> list[dict[str, Any]]:
        sql, args = "select * from runs", []
        if kind:
            sql, args = sql + " where kind = ?", [kind]
        return [self._with_liveness(decode(r)) for r in self.db.query(sql + " order by id", args)]

    def run_summaries(self) -> list[dict[str, Any]]:
        """Every run's id, kind, method, status and start, oldest first: what listings count, read without
        decoding each run's settings, metrics and epochs (a workspace with a thousand runs)."""
        rows = self.db.query("select id, kind, method, status, started, pid, host from runs order by id")
        return [{k: v for k, v in self._with_liveness(dict(r)).items() if k not in ("pid", "host")} for r in rows]

    def latest_run(self, kind: str, status: str = "completed") -> dict[str, Any] | None:
        done = [r for r in self.runs(kind) if r["status"] == status]
        return done[-1] if done else None

    def latest_backfill_run(self, model: str) -> dict[str, Any] | None:
        """The newest completed backfill run of ``model`` whose vector set the workspace still holds.

        The one definition of "the backfill a system serves now": a report measures the gallery it
        left, and a newer one outgrows that report (see :meth:`data_counts`). A rerun that reused that
        set (the same items, nothing embedded) serves the same gallery: the run that made the set is
        returned, so the rerun outgrows no report.
        """
        held = {int(s["id"]) for s in self.vector_sets(model)}  # type: ignore[attr-defined]
        rows = self.db.query("select * from runs where kind = 'backfill' and status = 'completed' and method = ? "
                             "order by id desc", [model])
        latest: dict[str, Any] | None = None
        for row in rows:
            run = decode(row)
            metrics = run.get("metrics")
            vector_set = metrics.get("vector_set") if isinstance(metrics, dict) else None
            if latest is None:
                if isinstance(vector_set, int) and vector_set in held:
                    latest = run
            elif vector_set == latest["metrics"]["vector_set"]:
                latest = run  # an earlier run of the same set: the one that made it
            else:
                break
        return latest

    def _with_liveness(self, run: dict[str, Any]) -> dict[str, Any]:
        if run["status"] == "running" and run.get("host") == socket.gethostname() and not pid_alive(run.get("pid"), run.get("started")):
            run["status"] = "interrupted"
        return run

    def mark_interrupted_runs(self) -> int:
        """Persist 'interrupted' for runs whose process died; returns how many."""
        stale = [r["id"] for r in self.runs() if r["status"] == "interrupted" and not r.get("finished")]
        for run_id in stale:
            self.update_run(run_id, status="interrupted", finished=now_iso(),
                            error="the process stopped before the job finished")
        return len(stale)

    # -- adapters ---------------------------------------------------------------------------
    def add_adapter(self, run_id: int | None, kind: str, direction: str, in_dim: int, out_dim: int,
                    old_model: str, new_model: str, source_file: str | Path,
                    config: dict | None = None, model_rows: dict[str, dict[str, Any]] | None = None
                    ) -> dict[str, Any]:
        """Copy an adapter file into ``adapters/`` and register it in one transaction.

        ``config["input_normalised"]`` is the layer's input policy (default True: fitted on
        L2-normalised vectors); it is always stored, and every reader honours it. ``model_rows``: the
        two models' rows as the layer's training read them, by name; a layer whose model was renamed,
        removed or replaced meanwhile is refused (stored, it would name a model that is gone or another).
        """
        source = Path(source_file)
        if not source.is_file():
            raise StoreError(f"{source}: the adapter file to store does not exist")
        if run_id is not None:
            self.run(run_id)  # raises StoreError for an unknown run, before anything is copied
        sha = sha256_file(source)
        final = self.root / "adapters" / f"{kind}-run{run_id}-{sha[:12]}{source.suffix or '.pt'}"
        rel = final.relative_to(self.root).as_posix()
        atomic_copy(source, final)
        if sha256_file(final) != sha:
            raise IntegrityError(f"{source}: the file changed while it was being stored")
        policy = {INPUT_POLICY_KEY: layer_input_normalised({"config": config})}  # always stored explicitly
        row = {"run_id": run_id, "kind": kind, "direction": direction, "in_dim": in_dim,
               "out_dim": out_dim, "old_model": old_model, "new_model": new_model,
               "file": rel, "sha256": sha, "config": {**(config or {}), **policy}, "created": now_iso()}
        try:
            with self.transaction(result=True):
                for name, model in (model_rows or {}).items():
                    self.check_model_named(name, model, "this layer was trained")
                pk = self.db["adapters"].insert(encode(row)).last_pk
        except BaseException:
            self.drop_unregistered_adapter_file(rel)
            raise
        return self.adapter(int(pk))

    def drop_unregistered_adapter_file(self, rel: str) -> None:
        """Remove ``adapters/...`` file ``rel`` of a registration that was rolled back (in its own transaction or
        an enclosing one), unless a row uses that (identical) copy."""
        if not self.db.execute("select 1 from adapters where file = ?", [rel]).fetchone():
            (self.root / rel).unlink(missing_ok=True)

    def adapter(self, adapter_id: int) -> dict[str, Any]:
        rows = list(self.db.query("select * from adapters where id = ?", [adapter_id]))
        if not rows:
            raise StoreError(f"{self.root}: no adapter with id {adapter_id}")
        return self._with_path(decode(rows[0]))

    def adapters(self) -> list[dict[str, Any]]:
        return [self._with_path(decode(r)) for r in self.db.query("select * from adapters order by id")]

    def adapter_for_run(self, run_id: int) -> dict[str, Any]:
        rows = list(self.db.query("select id from adapters where run_id = ? order by id desc", [run_id]))
        if not rows:
            raise StoreError(f"{self.root}: run {run_id} produced no adapter")
        return self.adapter(int(rows[0]["id"]))

    def adapter_path(self, adapter_id: int, verify: bool = True) -> Path:
        row = self.adapter(adapter_id)
        path = Path(row["path"])
        if verify and path.exists():
            stored_file_stat(path)  # a FIFO put there: hashing it would wait for ever
        if verify and (not path.exists() or sha256_file(path) != row["sha256"]):
            raise IntegrityError(f"{path}: adapter file is missing or changed since it was stored")
        return path

    # -- reports and bundles ----------------------------------------------------------------
    def add_report(self, run_id: int | None, adapter_id: int | None, json_file: str | Path,
                   html_file: str | Path | None, summary: dict) -> dict[str, Any]:
        row = {"run_id": run_id, "adapter_id": adapter_id, "json_file": self._rel(json_file),
               "html_file": self._rel(html_file) if html_file else None, "summary": summary,
               "created": now_iso()}
        with self.transaction(result=True):
            pk = self.db["reports"].insert(encode(row)).last_pk
        return self.report(int(pk))

    def report(self, report_id: int) -> dict[str, Any]:
        rows = list(self.db.query("select * from reports where id = ?", [report_id]))
        if not rows:
            raise StoreError(f"{self.root}: no report with id {report_id}")
        return decode(rows[0])

    def reports(self) -> list[dict[str, Any]]:
        return [decode(r) for r in self.db.query("select * from reports order by id")]

    def next_report_id(self) -> int:
        """The id the next registered report gets; call inside the transaction that registers it."""
        return int(self.db.execute("select coalesce(max(id), 0) + 1 from reports").fetchone()[0])

    def add_bundle(self, adapter_id: int | None, report_id: int | None, path: str | Path,
                   sha256: str, manifest: dict) -> dict[str, Any]:
        row = {"adapter_id": adapter_id, "report_id": report_id, "path": str(path), "sha256": sha256,
               "manifest": manifest, "created": now_iso()}
        with self.transaction(result=True):
            pk = self.db["bundles"].insert(encode(row)).last_pk
        return decode(next(iter(self.db.query("select * from bundles where id = ?", [pk]))))

    def bundles(self) -> list[dict[str, Any]]:
        return [decode(r) for r in self.db.query("select * from bundles order by id")]

    def _rel(self, path: str | Path) -> str:
        p = Path(path)
        try:
            return p.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(p)

    def _with_path(self, row: dict[str, Any]) -> dict[str, Any]:
        row["path"] = str(self.root / row["file"])
        return row

    def data_counts(self) -> dict[str, Any]:
        """What numbers measured on the workspace depend on: the judgment count, and per model (by id)
        how many items hold its vectors and its name (see :mod:`embridge.core.data_state`)."""
        judgments = self.db.execute("select count(*) from judgments").fetchone()[0] \
            if "judgments" in self.db.table_names() else 0
        names = {str(i): str(n) for i, n in self.db.execute("select id, name from models")}
        held = {model_id: self._items_holding(name) for model_id, name in names.items()}
        latest = {model_id: self.latest_backfill_run(name) for model_id, name in names.items()}
        backfills = {model_id: int(run["id"]) if run else 0 for model_id, run in latest.items()}
        return {"judgments": int(judgments), "with_vectors": held, "model_names": names, "backfills": backfills}

    def _items_holding(self, model: str) -> int:
        """How many items hold ``model``'s vectors: one set's own count, else the union of its sets' ids."""
        sets = self.vector_sets(model)  # type: ignore[attr-defined]
        if len(sets) <= 1:
            return int(sets[0]["count"]) if sets else 0
        return int(len(self.ids_with_vectors(model)))  # type: ignore[attr-defined]
