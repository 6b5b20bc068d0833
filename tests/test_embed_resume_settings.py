"""An interrupted embedding resumes only for the very model that started it.

A model removed and added again under its name with other prompts (or pooling) gives other vectors
from the same weights: the partial rows the first one left must not be taken into the second one's
set. The resume key covers every setting that shapes the vectors, not only the weights' checksum.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from text_fixtures import tiny_sentence_transformer

from embridge.core.embed import embed_items
from embridge.core.errors import Cancelled
from embridge.core.importers import import_items
from embridge.core.models.adding import add_model
from embridge.core.models.manage import remove_model
from embridge.core.prompts import TextOptions
from embridge.core.store import Workspace

WORDS = "the cat sat on a mat dog ran in park bird sang tree".split()


class _StopAfter:
    """Progress callback and stop request: stop once ``rows`` rows are done (whole chunks are kept)."""

    def __init__(self, rows: int) -> None:
        self.rows, self.done = rows, 0

    def progress(self, done: int, total: int, info: object = None) -> None:
        self.done = done

    def stop(self) -> bool:
        return self.done >= self.rows


def test_a_model_added_again_with_other_prompts_does_not_resume_the_first_ones_rows(tmp_path: Path) -> None:
    folder = tiny_sentence_transformer(tmp_path / "st")
    rng = np.random.default_rng(0)
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"key": f"k{i}", "text": " ".join(rng.choice(WORDS, 5))}) + "\n"
                             for i in range(40)))
    with Workspace.create(tmp_path / "ws") as ws:
        import_items(ws, items, split="gallery")
        ids = ws.item_ids()
        add_model(ws, folder, "m", "new", text=TextOptions(document_prompt=""))
        stopper = _StopAfter(20)
        with pytest.raises(Cancelled):  # two chunks of ten stored, then stopped
            embed_items(ws, "m", ids, chunk_size=10, batch_size=5, on_progress=stopper.progress,
                        should_stop=stopper.stop)
        assert list((tmp_path / "ws" / "vectors" / ".partial").glob("*.json"))  # its rows kept for a resume
        assert ws.vector_sets("m") == []
        remove_model(ws, "m")
        add_model(ws, folder, "m", "new", text=TextOptions(document_prompt="passage: "))
        embed_items(ws, "m", ids, chunk_size=10, batch_size=5)
        stored = ws.vectors_for("m", ids)
        fresh = embed_items(ws, "m", ids, chunk_size=10, batch_size=5, name="fresh", resume=False)
        clean = ws.open_vector_set(int(fresh["id"]))[1]
        add_model(ws, folder, "unprompted", "other", text=TextOptions(document_prompt=""))
        embed_items(ws, "unprompted", ids, chunk_size=10, batch_size=5)
        unprompted = ws.vectors_for("unprompted", ids)
    assert np.abs(clean - unprompted).max() > 1e-3  # the prompt changes every vector
    np.testing.assert_allclose(stored, clean, atol=1e-6)  # every row made with the second model's prompt


@pytest.mark.parametrize("full", ["vector folder", "database"])
def test_a_disk_full_when_the_set_is_finished_keeps_the_embedded_rows_for_the_rerun(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, full: str) -> None:
    """A disk that filled while a model embedded failed the commit (the id list was written only then,
    and numpy's short write read as 'cannot finish (... requested and ... written)'), and every row
    embedded was thrown away. The id list is written at the start now; a full disk at the end says so
    and keeps the rows, and the rerun stores them without embedding one again."""
    import errno
    import sqlite3

    from embridge.core.errors import DiskFullError
    from embridge.core.store import sqlite_errors, vector_matrix
    from embridge.core.store.files import disk_error

    assert isinstance(disk_error(OSError("8000 requested and 4096 written"), tmp_path, "finish"), DiskFullError)
    folder = tiny_sentence_transformer(tmp_path / "st")
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"key": f"k{i}", "text": f"{WORDS[i % 13]} {WORDS[(i * 7) % 13]}"}) + "\n"
                             for i in range(30)))
    real_save_state = vector_matrix.VectorSetWriter._save_state

    def full_at_the_end(self: object, done: int, committing: list[str] | None = None) -> None:
        if committing:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save_state(self, done, committing)  # type: ignore[arg-type]

    def database_full(*args: object) -> None:  # SQLite's words when the database's disk is the full one
        raise sqlite3.OperationalError("database or disk is full")

    with Workspace.create(tmp_path / "ws") as ws:
        import_items(ws, items, split="gallery")
        ids = ws.item_ids()
        add_model(ws, folder, "m", "new")
        if full == "database":
            monkeypatch.setattr(Workspace, "check_model_kept", database_full)
            monkeypatch.setattr(sqlite_errors, "free_bytes", lambda folder: 4096)
        else:
            monkeypatch.setattr(vector_matrix.VectorSetWriter, "_save_state", full_at_the_end)
        with pytest.raises(DiskFullError, match="(not enough disk space|no space left).*the 30 rows embedded so "
                                                "far are kept"):
            embed_items(ws, "m", ids, chunk_size=10, batch_size=5)
        assert ws.vector_sets("m") == []
        monkeypatch.undo()
        embedded: list[int] = []
        info = embed_items(ws, "m", ids, chunk_size=10, batch_size=5,
                           on_progress=lambda done, total, _info=None: embedded.append(done))
        assert info["count"] == 30 and max(embedded, default=30) == 30 and 10 not in embedded  # none again
        reference = tmp_path / "ref"
        with Workspace.create(reference) as again:
            import_items(again, items, split="gallery")
            add_model(again, folder, "m", "new")
            embed_items(again, "m", again.item_ids(), chunk_size=10, batch_size=5)
            np.testing.assert_array_equal(ws.vectors_for("m", ids), again.vectors_for("m", again.item_ids()))
