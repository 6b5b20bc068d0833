"""Relevance judgments: graded (query item, document item) pairs, each in one split.

A judgment says how relevant a gallery item is to a query item: grade > 0 is relevant (higher is
better), grade 0 was judged and found not relevant. Each judgment belongs to the train, dev or
test split of its query, so training, model selection and held-out numbers never share queries.
:class:`Judgments` is the array form every consumer gets; :class:`JudgmentsMixin` gives the
workspace its read and write methods.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embridge.core.errors import ImportDataError, StoreError
from embridge.core.formatting import shown_name
from embridge.core.store.schema import DOC_NAMESPACE, QUERY_NAMESPACE

JUDGMENT_SPLITS = ("train", "dev", "test")
MAX_GRADE = 1_000_000
_CHUNK = 500


@dataclass(frozen=True, eq=False)  # arrays: compare fields with numpy, not ==
class Judgments:
    """One row per judgment; all arrays have the same length."""

    query_ids: np.ndarray  # int64 item ids of query items
    item_ids: np.ndarray  # int64 item ids of gallery (document) items
    grades: np.ndarray  # int32; > 0 relevant, 0 judged not relevant
    splits: np.ndarray  # str: "train", "dev" or "test"

    @classmethod
    def empty(cls) -> Judgments:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, dtype="<U5"))

    @classmethod
    def from_arrays(cls, query_ids: Sequence[int] | np.ndarray, item_ids: Sequence[int] | np.ndarray,
                    grades: Sequence[int] | np.ndarray, splits: Sequence[str] | np.ndarray) -> Judgments:
        try:
            out = cls(np.asarray(query_ids, dtype=np.int64).ravel(), np.asarray(item_ids, dtype=np.int64).ravel(),
                      np.asarray(grades, dtype=np.int32).ravel(), np.asarray(splits, dtype=str).ravel())
        except OverflowError as exc:
            raise ValueError(f"a judgment value is out of range ({exc}); grades are 0 to {MAX_GRADE}") from exc
        if not len(out.query_ids) == len(out.item_ids) == len(out.grades) == len(out.splits):
            raise ValueError("judgment arrays differ in length")
        return out

    def __len__(self) -> int:
        return len(self.query_ids)

    def for_split(self, split: str) -> Judgments:
        keep = self.splits == split
        return Judgments(self.query_ids[keep], self.item_ids[keep], self.grades[keep], self.splits[keep])

    def query_ids_unique(self) -> np.ndarray:
        """Sorted ids of the queries that have at least one judgment (relevant or not)."""
        return np.unique(self.query_ids)

    def relevant_sets(self) -> dict[int, dict[int, int]]:
        """query id -> {item id: grade} over the relevant judgments (grade > 0) only."""
        out: dict[int, dict[int, int]] = {}
        keep = self.grades > 0
        for q, i, g in zip(self.query_ids[keep].tolist(), self.item_ids[keep].tolist(),
                           self.grades[keep].tolist(), strict=True):
            out.setdefault(q, {})[i] = g
        return out

    def split_counts(self) -> dict[str, dict[str, int]]:
        """Per split: judgments, relevant judgments and judged queries."""
        out = {}
        for split in JUDGMENT_SPLITS:
            part = self.for_split(split)
            if len(part):
                out[split] = {"judgments": len(part), "relevant": int((part.grades > 0).sum()),
                              "queries": len(part.query_ids_unique())}
        return out


class JudgmentsMixin:
    """Methods of :class:`embridge.core.store.Workspace` for relevance judgments."""

    root: Path

    def judgments(self, split: str | None = None) -> Judgments:
        """All judgments (or one split's), ordered by query id then item id; empty when none."""
        if split is not None and split not in JUDGMENT_SPLITS:
            raise StoreError(f"unknown judgment split '{split}': use one of {', '.join(JUDGMENT_SPLITS)}")
        sql, args = "select query_id, item_id, grade, split from judgments", []
        if split:
            sql, args = sql + " where split = ?", [split]
        rows = self.db.execute(sql + " order by query_id, item_id", args).fetchall()
        if not rows:
            return Judgments.empty()
        q, i, g, s = zip(*rows, strict=True)
        return Judgments.from_arrays(q, i, g, s)

    def has_judgments(self) -> bool:
        return self.db.execute("select 1 from judgments limit 1").fetchone() is not None

    def add_judgments(self, judgments: Judgments | None = None, source: str = "judgments", *,
                      query_ids: Sequence[int] | np.ndarray | None = None,
                      item_ids: Sequence[int] | np.ndarray | None = None,
                      grades: Sequence[int] | np.ndarray | None = None,
                      splits: Sequence[str] | np.ndarray | None = None,
                      name_row: Callable[[int], str] | None = None) -> int:
        """Store judgments (a :class:`Judgments`, or its four arrays by keyword) all-or-nothing.

        Returns how many were added. Query ids must be query items and item ids document items of
        this workspace; a pair given twice, or already judged, is refused rather than overwritten.
        ``name_row``: how a refusal names judgment ``n`` (a file's line and keys), else by its keys.
        """
        if judgments is None:
            if query_ids is None or item_ids is None or grades is None or splits is None:
                raise ImportDataError(source, "give a Judgments or all of query_ids, item_ids, grades and splits")
            try:
                judgments = Judgments.from_arrays(query_ids, item_ids, grades, splits)
            except ValueError as exc:
                raise ImportDataError(source, str(exc)) from exc
        if not len(judgments):
            raise ImportDataError(source, "no judgments to store")
        bad = sorted(set(judgments.splits.tolist()) - set(JUDGMENT_SPLITS))
        if bad:
            raise ImportDataError(source, f"unknown split '{bad[0]}' (use {', '.join(JUDGMENT_SPLITS)})")
        if (judgments.grades < 0).any():
            raise ImportDataError(source, f"negative grade {int(judgments.grades.min())}; grades are 0 or more")
        if (judgments.grades > MAX_GRADE).any():
            raise ImportDataError(source, f"grade {int(judgments.grades.max())} is too large; grades are 0 to "
                                  f"{MAX_GRADE}")
        pairs = np.stack([judgments.query_ids, judgments.item_ids], axis=1)
        uniq, counts = np.unique(pairs, axis=0, return_counts=True)
        if (counts > 1).any():
            q, i = uniq[np.flatnonzero(counts > 1)[0]].tolist()
            raise ImportDataError(source, f"the pair (query item {q}, item {i}) is judged more than once")
        rows = [{"query_id": q, "item_id": i, "grade": g, "split": s} for q, i, g, s in zip(
            judgments.query_ids.tolist(), judgments.item_ids.tolist(), judgments.grades.tolist(),
            judgments.splits.tolist(), strict=True)]
        with self.transaction():
            self._check_namespace(judgments.query_ids_unique(), QUERY_NAMESPACE, source, "query")
            self._check_namespace(np.unique(judgments.item_ids), DOC_NAMESPACE, source, "document")
            stored = self.judged_pairs(judgments.query_ids, judgments.item_ids)  # no pair twice: checked above
            if stored.any():
                first, count = int(stored.argmax()), int(stored.sum())
                if name_row is None:
                    q, i = self.keys_of([judgments.query_ids[first], judgments.item_ids[first]])
                    subject, total = f"query '{shown_name(q)}' and item '{shown_name(i)}'", "in all"
                else:
                    subject, total = name_row(first), "of this file in all"
                raise ImportDataError(source, f"{subject} are already judged in the workspace ({count} "
                                      f"pair{'s' if count > 1 else ''} {total}); a judgment is not overwritten")
            self._check_query_splits(judgments, source)
            self.db["judgments"].insert_all(rows, batch_size=1000)
        return len(rows)

    def judgment_counts(self) -> dict[str, dict[str, int]]:
        """Per split: judgments, relevant ones and judged queries (what ``info`` shows)."""
        rows = self.db.execute("select split, count(*), sum(grade > 0), count(distinct query_id) "
                               "from judgments group by split order by split").fetchall()
        return {s: {"judgments": n, "relevant": int(r or 0), "queries": q} for s, n, r, q in rows}

    def judged_query_splits(self, query_ids: Sequence[int]) -> dict[int, str]:
        """query id -> the split of its stored judgments, for those of ``query_ids`` already judged."""
        out: dict[int, str] = {}
        ids = [int(q) for q in query_ids]
        for start in range(0, len(ids), _CHUNK):
            part = ids[start:start + _CHUNK]
            marks = ",".join("?" * len(part))
            out.update(self.db.execute(f"select distinct query_id, split from judgments where query_id in ({marks})",
                                       part).fetchall())
        return out

    def _check_query_splits(self, judgments: Judgments, source: str) -> None:
        """A query keeps one split across additions, so held-out queries never reach training."""
        given: dict[int, str] = {}
        for q, s in zip(judgments.query_ids.tolist(), judgments.splits.tolist(), strict=True):
            if given.setdefault(q, s) != s:
                raise ImportDataError(source, f"query item {q} is given splits '{given[q]}' and '{s}'; a query "
                                      "belongs to one split")
        stored = self.judged_query_splits(sorted(given))
        for q, s in given.items():
            if q in stored and stored[q] != s:
                raise ImportDataError(source, f"query item {q} is given split '{s}' but is already in split "
                                      f"'{stored[q]}'; a query belongs to one split")

    def _check_namespace(self, ids: np.ndarray, namespace: str, source: str, what: str) -> None:
        found: set[int] = set()
        id_list = ids.tolist()
        for start in range(0, len(id_list), _CHUNK):
            part = id_list[start:start + _CHUNK]
            marks = ",".join("?" * len(part))
            found.update(r[0] for r in self.db.execute(
                f"select id from items where namespace = ? and id in ({marks})", [namespace, *part]))
        wrong = [i for i in id_list if i not in found]
        if wrong:
            raise ImportDataError(source, f"{len(wrong)} ids are not {what} items of the workspace, e.g. {wrong[:5]}")

    def judged_pairs(self, query_ids: Sequence[int] | np.ndarray, item_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """For each (query id, item id) pair, whether the workspace already holds a judgment of it."""
        pairs = [(int(q), int(i)) for q, i in zip(query_ids, item_ids, strict=True)]
        stored: set[tuple[int, int]] = set()
        queries = sorted({q for q, _ in pairs})
        for start in range(0, len(queries), _CHUNK):
            part = queries[start:start + _CHUNK]
            marks = ",".join("?" * len(part))
            stored.update(self.db.execute(f"select query_id, item_id from judgments where query_id in ({marks})", part))
        return np.fromiter((p in stored for p in pairs), dtype=bool, count=len(pairs))
