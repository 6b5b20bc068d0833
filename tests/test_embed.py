"""Embedding in batches and chunks: same numbers as a direct forward, resumable, all-or-nothing on failure."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from embridge.core.embed import embed_array, embed_items
from embridge.core.errors import Cancelled, CheckpointError, InputError
from embridge.core.models import LoadedModel, build_model, describe_model, save_checkpoint, save_vectors_model
from embridge.core.store import Workspace

CONFIG = {"input_dim": 6, "hidden": 12, "out_dim": 3}
N_ITEMS, CHUNK, BATCH = 50, 16, 5


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    workspace = Workspace.create(tmp_path / "ws")
    yield workspace
    workspace.close()


@pytest.fixture
def model(tmp_path: Path) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("mlp", CONFIG)[0].eval()


def _inputs() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(N_ITEMS, 6)).astype(np.float32)


def _add_items(ws: Workspace, inputs: np.ndarray) -> np.ndarray:
    records = [{"key": f"item-{i:03d}", "label": str(i % 4), "modality": "vector",
                "metadata": {"array": row.tolist()}} for i, row in enumerate(inputs)]
    return np.asarray(ws.add_items(records))


def _add_model(ws: Workspace, model: torch.nn.Module, tmp_path: Path, name: str = "old") -> None:
    path = tmp_path / f"{name}.pt"
    save_checkpoint(path, model, "mlp", CONFIG)
    ws.add_model(name, "old", describe_model(path, name=name).to_dict(), path)


@pytest.fixture
def forwarded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Rows passed through a model's forward, one entry per batch."""
    rows: list[int] = []
    original = LoadedModel.embed_batch

    def counting(self: LoadedModel, inputs: object) -> np.ndarray:
        rows.append(len(inputs))  # type: ignore[arg-type]
        return original(self, inputs)  # type: ignore[arg-type]

    monkeypatch.setattr(LoadedModel, "embed_batch", counting)
    return rows


def _uninterrupted(model: torch.nn.Module, tmp_path: Path) -> np.ndarray:
    """The test items' vectors embedded in one go, in a workspace of their own."""
    with Workspace.create(tmp_path / "reference") as reference:
        ids = _add_items(reference, _inputs())
        _add_model(reference, model, tmp_path)
        return _stored(reference, embed_items(reference, "old", ids, batch_size=BATCH, chunk_size=CHUNK,
                                              device="cpu"))[1]


def _stored(ws: Workspace, info: dict) -> tuple[np.ndarray, np.ndarray]:
    ids, matrix = ws.open_vector_set(info["id"])
    return ids, np.asarray(matrix)


def test_embed_array_matches_forward_reports_progress_and_stops(model: torch.nn.Module) -> None:
    x = _inputs()
    seen: list[tuple[int, int]] = []
    got = embed_array(model, x, batch_size=8, device="cpu", on_progress=lambda d, t, _: seen.append((d, t)))
    with torch.no_grad():
        np.testing.assert_allclose(got, model(torch.from_numpy(x)).numpy(), atol=1e-6)
    assert seen == [(min(s + 8, 50), 50) for s in range(0, 50, 8)]
    calls = iter(range(100))
    with pytest.raises(Cancelled):
        embed_array(model, x, batch_size=8, device="cpu", should_stop=lambda: next(calls) >= 3)
    with pytest.raises(InputError, match="nothing to embed"):
        embed_array(model, x[:0], device="cpu")


def test_embed_items_writes_a_vector_set_aligned_to_the_ids(ws: Workspace, model: torch.nn.Module,
                                                            tmp_path: Path, forwarded: list[int]) -> None:
    x = _inputs()
    ids = _add_items(ws, x)
    _add_model(ws, model, tmp_path)
    forwarded.clear()  # describing the model probed it once
    order = ids[::-1].copy()  # any order of ids is kept
    info = embed_items(ws, "old", order, batch_size=BATCH, chunk_size=CHUNK, device="cpu")
    stored_ids, vectors = _stored(ws, info)
    assert info["count"] == N_ITEMS and info["dim"] == 3 and stored_ids.tolist() == order.tolist()
    with torch.no_grad():
        np.testing.assert_allclose(vectors, model(torch.from_numpy(x[::-1].copy())).numpy(), atol=1e-6)
    assert sum(forwarded) == N_ITEMS and max(forwarded) == BATCH


def test_interrupted_embedding_resumes_after_the_last_complete_chunk(
        ws: Workspace, model: torch.nn.Module, tmp_path: Path, forwarded: list[int]) -> None:
    full = _uninterrupted(model, tmp_path)  # the same items embedded without a stop
    ids = _add_items(ws, _inputs())
    _add_model(ws, model, tmp_path)
    forwarded.clear()

    done = {"rows": 0}
    def track(d: int, t: int, info: dict) -> None:
        done["rows"] = d

    with pytest.raises(Cancelled):  # asked to stop once two chunks are through
        embed_items(ws, "old", ids, batch_size=BATCH, chunk_size=CHUNK, device="cpu", name="part",
                    on_progress=track, should_stop=lambda: done["rows"] >= 2 * CHUNK)
    assert sum(forwarded) == 2 * CHUNK
    assert ws.vector_sets("old") == []  # nothing registered yet
    forwarded.clear()
    starts: list[int] = []
    resumed = embed_items(ws, "old", ids, batch_size=BATCH, chunk_size=CHUNK, device="cpu", name="part",
                          on_progress=lambda d, t, info: starts.append(info.get("resumed_from", -1)))
    assert sum(forwarded) == N_ITEMS - 2 * CHUNK and starts[0] == 2 * CHUNK
    np.testing.assert_array_equal(_stored(ws, resumed)[1], full)
    assert _stored(ws, resumed)[0].tolist() == ids.tolist()


def test_items_holding_the_models_vectors_are_not_embedded_again(ws: Workspace, model: torch.nn.Module,
                                                                  tmp_path: Path, forwarded: list[int]) -> None:
    """A second embed of the same items stored a second identical set (the gallery's vectors twice on disk)."""
    ids = _add_items(ws, _inputs())
    _add_model(ws, model, tmp_path)
    first = embed_items(ws, "old", ids[:40], batch_size=BATCH, chunk_size=CHUNK, device="cpu")
    forwarded.clear()
    again = embed_items(ws, "old", ids, batch_size=BATCH, chunk_size=CHUNK, device="cpu")
    assert sum(forwarded) == len(ids) - 40 and (again["written"], again["already_stored"]) == (len(ids) - 40, 40)
    forwarded.clear()
    none = embed_items(ws, "old", ids, batch_size=BATCH, chunk_size=CHUNK, device="cpu")
    assert sum(forwarded) == 0 and (none["written"], none["already_stored"]) == (0, len(ids))
    assert [s["id"] for s in ws.vector_sets("old")] == [first["id"], again["id"]] == [none["id"] - 1, none["id"]]
    Path(first["path"]).unlink()  # a set whose file was deleted by hand: its items are embedded again
    forwarded.clear()
    repaired = embed_items(ws, "old", ids, batch_size=BATCH, chunk_size=CHUNK, device="cpu")
    assert sum(forwarded) == 40 and repaired["written"] == 40
    full = _uninterrupted(model, tmp_path)
    np.testing.assert_allclose(ws.vectors_for("old", ids), full, atol=1e-6)  # other batches: float rounding


def test_resume_false_starts_over(ws: Workspace, model: torch.nn.Module, tmp_path: Path,
                                  forwarded: list[int]) -> None:
    ids = _add_items(ws, _inputs())
    _add_model(ws, model, tmp_path)
    forwarded.clear()
    with pytest.raises(Cancelled):
        embed_items(ws, "old", ids, batch_size=BATCH, chunk_size=CHUNK, device="cpu",
                    should_stop=lambda: sum(forwarded) >= CHUNK)
    forwarded.clear()
    embed_items(ws, "old", ids, batch_size=BATCH, chunk_size=CHUNK, device="cpu", resume=False)
    assert sum(forwarded) == N_ITEMS


def test_a_failed_run_registers_nothing_and_leaves_no_partial_rows(
        ws: Workspace, model: torch.nn.Module, tmp_path: Path, forwarded: list[int]) -> None:
    x = _inputs()
    records = [{"key": f"k{i}", "modality": "vector", "metadata": {"array": row.tolist()}}
               for i, row in enumerate(x)]
    records[40]["metadata"] = {"array": [1.0, 2.0]}  # wrong length, in the third chunk
    ids = np.asarray(ws.add_items(records))
    _add_model(ws, model, tmp_path)
    with pytest.raises(InputError, match=r"item 'k40': 2 values but model old takes input of shape \(6,\)"):
        embed_items(ws, "old", ids, batch_size=BATCH, chunk_size=CHUNK, device="cpu")
    assert ws.vector_sets("old") == []
    forwarded.clear()
    good = ids[:40]
    embed_items(ws, "old", good, batch_size=BATCH, chunk_size=CHUNK, device="cpu")
    assert sum(forwarded) == 40


def test_vectors_model_embeds_exactly_the_items_its_file_covers(ws: Workspace, tmp_path: Path,
                                                                 forwarded: list[int]) -> None:
    ids = _add_items(ws, _inputs())
    table = np.random.default_rng(3).normal(size=(N_ITEMS, 4)).astype(np.float32)
    keys = [f"item-{i:03d}" for i in range(N_ITEMS)]
    partial = save_vectors_model(tmp_path / "some.npz", keys[:47][::-1], table[:47][::-1])
    ws.add_model("some", "old", describe_model(partial).to_dict(), partial)
    assert ws.model("some")["path"] == str(partial.resolve()) and not list((ws.root / "models").iterdir())
    info = embed_items(ws, "some", ids, chunk_size=CHUNK, device="cpu")
    assert (info["count"], info["written"], info["not_covered"], info["already_stored"]) == (47, 47, 3, 0)
    stored_ids, stored = _stored(ws, info)
    assert sorted(stored_ids.tolist()) == list(ids[:47])
    np.testing.assert_array_equal(ws.vectors_for("some", ids[:47]), table[:47])
    again = embed_items(ws, "some", ids, chunk_size=CHUNK, device="cpu")  # nothing new: no second copy
    assert again["written"] == 0 and again["already_stored"] == 47 and len(ws.vector_sets("some")) == 1
    other = save_vectors_model(tmp_path / "other.npz", ["nope-1", "nope-2"], table[:2])
    ws.add_model("other", "old", describe_model(other).to_dict(), other)
    with pytest.raises(CheckpointError, match=r"other\.npz: none of the 50 items to embed has a vector"):
        embed_items(ws, "other", ids, chunk_size=CHUNK, device="cpu")
    assert ws.vector_sets("other") == []
    assert forwarded == []  # looked up, never run


def test_a_stored_checkpoint_that_changed_is_refused(ws: Workspace, model: torch.nn.Module,
                                                     tmp_path: Path) -> None:
    ids = _add_items(ws, _inputs())
    _add_model(ws, model, tmp_path)
    stored = Path(ws.model("old")["path"])
    save_checkpoint(stored, build_model("mlp", CONFIG)[0], "mlp", CONFIG)
    with pytest.raises(CheckpointError, match="file changed since the model was added"):
        embed_items(ws, "old", ids, device="cpu")


def test_model_remove_drops_a_killed_embeds_resumable_rows(ws: Workspace, model: torch.nn.Module,
                                                             tmp_path: Path) -> None:
    """They stayed in vectors/.partial (a file the size of the whole set) with nothing left to resume them."""
    from embridge.core.models.manage import remove_model

    ids = _add_items(ws, _inputs())
    _add_model(ws, model, tmp_path)
    (tmp_path / "other").mkdir()
    _add_model(ws, model, tmp_path / "other", name="kept")
    calls: list[int] = []
    for name in ("old", "kept"):
        with pytest.raises(Cancelled):
            embed_items(ws, name, ids, batch_size=BATCH, chunk_size=CHUNK, device="cpu",
                        should_stop=lambda: calls.append(1) or len(calls) % 3 == 0)
    partial = ws.root / "vectors" / ".partial"
    owners = sorted(json.loads(p.read_text())["model"] for p in partial.glob("*.json"))
    assert owners == ["kept", "old"] and len(list(partial.glob("*.npy"))) == 4  # rows and ids of each
    from embridge.core.store.file_lock import HeldLock
    from embridge.core.store.partial_sets import drop_partials

    key = next(p.stem for p in partial.glob("*.json") if json.loads(p.read_text())["model"] == "old")
    held = HeldLock(partial / f"{key}.lock", RuntimeError)  # a writer still at work on them
    assert drop_partials(partial, "old") == 0 and len(list(partial.glob("*.npy"))) == 4
    held.release()
    remove_model(ws, "old")
    assert [json.loads(p.read_text())["model"] for p in partial.glob("*.json")] == ["kept"]
    assert len(list(partial.glob("*.npy"))) == 2  # the other model's rows stay for its resume
    info = embed_items(ws, "kept", ids, batch_size=BATCH, chunk_size=CHUNK, device="cpu")
    assert info["count"] == N_ITEMS


@pytest.mark.parametrize("load_fails", [True, False], ids=["files-gone-mid-load", "loaded-before"])
def test_a_model_removed_while_its_checkpoint_loads_is_said_to_be_removed(
        ws: Workspace, model: torch.nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        load_fails: bool) -> None:
    """`model remove` during an embed's load took the stored checkpoint away: the embed failed with a
    missing file or "not valid JSON" under models/, which reads as a damaged checkpoint."""
    import embridge.core.embed as embed_module
    from embridge.core.errors import StoreError
    from embridge.core.models.manage import remove_model

    ids = _add_items(ws, _inputs())
    _add_model(ws, model, tmp_path)
    real_load = embed_module.load_model

    def removed_meanwhile(spec: object, *args: object, **kwargs: object) -> LoadedModel:
        with Workspace.open(ws.root) as other:  # another process's `model remove`
            remove_model(other, "old")
        if load_fails:  # what a sentence-transformers folder removed under the loader gave
            raise CheckpointError("models/old/modules.json: not valid JSON (FileNotFoundError)")
        return real_load(spec, *args, **kwargs)

    monkeypatch.setattr(embed_module, "load_model", removed_meanwhile)
    with pytest.raises(StoreError, match=r"model 'old' was removed while its vectors were being written"):
        embed_items(ws, "old", ids, device="cpu")
    assert ws.vector_sets() == []


@pytest.mark.parametrize(("args", "expect"), [
    (("--model", "nosuch"), r"--model: no model named 'nosuch' in the workspace .* \(known: old\)"),
    (("--model", "old", "--device", "banana"), r"--device: unknown device 'banana'"),
    (("--model", "old", "--device", "cuda:99"), r"--device: device 'cuda:99' was requested but "),
    (("--model", "old", "--split", "nosplit"), r"--split: no items in split 'nosplit'; the workspace's "
                                               r"splits: train, val$"),
], ids=["model", "device", "absent-gpu", "split"])
def test_bad_embed_options_are_refused_before_a_run_is_recorded(
        ws: Workspace, model: torch.nn.Module, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        args: tuple[str, ...], expect: str) -> None:
    import re

    from helpers.workspace_files import checkpoint, snapshot, table_dump

    from embridge.core.cli.main import main

    ws.add_items([{"key": f"item-{i:03d}", "modality": "vector", "split": "train" if i < 30 else "val",
                   "metadata": {"array": row.tolist()}} for i, row in enumerate(_inputs())])
    _add_model(ws, model, tmp_path)
    checkpoint(ws)
    files, rows = snapshot(ws.root), table_dump(ws.root)
    code = main(["embed", "-w", str(ws.root), *args])
    err = capsys.readouterr().err
    status = 2 if "banana" in args else 1  # a device no machine has is misuse; an absent GPU is not
    assert code == status and err.count("\n") == 1 and re.search(expect, err.rstrip()), err
    assert table_dump(ws.root) == rows  # no failed run row, no vector set
    checkpoint(ws)
    assert snapshot(ws.root) == files


def test_a_sample_asked_again_is_the_one_embedded_and_a_larger_one_adds_to_it(demo_copy: Path) -> None:
    from embridge.core.embed import embed_split

    with Workspace.open(demo_copy) as ws:
        held = ws.ids_with_vectors("new-cnn")
        assert held.size == 800  # the demo's evaluation sample
        again = embed_split(ws, "new-cnn", sample=800)
        assert again["written"] == 0 and again["already_stored"] == 800  # not a fresh draw of 800 beside it
        larger = embed_split(ws, "new-cnn", sample=900)
        assert larger["written"] == 100 and larger["already_stored"] == 800
        now = ws.ids_with_vectors("new-cnn")
    assert now.size == 900 and np.isin(held, now).all()
