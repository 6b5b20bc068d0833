"""Nothing of the user's is ever deleted or overwritten: outputs, sweeps, names and resumes.

Written as a hostile user would: linked folders, an emptied database, names that are paths,
outputs that are the workspace or an input, an input swapped for another of the same size and
time, and property tests over arbitrary names, paths and option values.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embridge.core.cli.main import main
from embridge.core.cli.option_types import number
from embridge.core.errors import Cancelled, InputError, StoreError
from embridge.core.paths import check_name, check_output, is_within
from embridge.core.store import Workspace
from embridge.core.store.workspace import DB_NAME

DIM = 4


def _workspace_with_vectors(root: Path) -> tuple[Path, Path]:
    """A workspace whose model 'm' has one registered vector set; returns (root, its folder)."""
    with Workspace.create(root) as ws:
        ids = ws.add_items([{"key": f"k{i}"} for i in range(3)])
        ws.add_model("m", "old", {"kind": "vectors", "dim": DIM, "sha256": "0" * 64}, None)
        ws.add_vector_set("m", ids, np.eye(3, DIM, dtype=np.float32))
    return root, root / "vectors" / "m"


def _users_files(folder: Path) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {"notes.npy": b"mine", "vectors-0123abcd.npy": b"looks like ours, is not",
             "vectors-0123abcd.ids.npy": b"also mine"}
    old = time.time() - 7200
    for name, data in files.items():
        (folder / name).write_bytes(data)
        os.utime(folder / name, (old, old))
    return files


@pytest.fixture
def sweep_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("embridge.core.store.workspace_folder.TEMP_MAX_AGE_S", -60)  # every unregistered file counts as old


def test_the_sweep_never_follows_a_linked_model_folder(tmp_path: Path, sweep_everything: None) -> None:
    root, model_dir = _workspace_with_vectors(tmp_path / "ws")
    elsewhere = tmp_path / "my-own-vectors"
    files = _users_files(elsewhere)
    shutil.rmtree(model_dir)
    model_dir.symlink_to(elsewhere, target_is_directory=True)
    Workspace.open(root).close()
    assert {p.name: p.read_bytes() for p in elsewhere.iterdir()} == files


def test_the_sweep_never_follows_a_linked_vectors_folder(tmp_path: Path, sweep_everything: None) -> None:
    root, _ = _workspace_with_vectors(tmp_path / "ws")
    elsewhere = tmp_path / "linked-vectors"
    shutil.move(root / "vectors", elsewhere)
    files = _users_files(elsewhere / "m")
    (root / "vectors").symlink_to(elsewhere, target_is_directory=True)
    Workspace.open(root).close()
    assert {p.name: p.read_bytes() for p in (elsewhere / "m").iterdir() if p.name in files} == files


def test_the_sweep_removes_only_names_it_gives(tmp_path: Path, sweep_everything: None) -> None:
    root, model_dir = _workspace_with_vectors(tmp_path / "ws")
    registered = sorted(p.name for p in model_dir.iterdir())
    mine = {"notes.npy": b"x", "copy of vectors.npy": b"y", "vectors-xyz.npy": b"z"}
    for name, data in mine.items():
        (model_dir / name).write_bytes(data)
    orphan = model_dir / "lost-0000abcd.npy"  # the name a commit gives; never registered
    np.save(orphan, np.zeros((1, DIM)))
    linked_orphan = model_dir / "gone-0000abcd.npy"
    target = tmp_path / "target.npy"
    target.write_bytes(b"keep")
    linked_orphan.symlink_to(target)
    (tmp_path / "unregistered-model").mkdir()
    _users_files(root / "vectors" / "not-a-model")
    old = time.time() - 7200
    for path in [*model_dir.iterdir()]:
        os.utime(path, (old, old), follow_symlinks=False)
    Workspace.open(root).close()
    assert not orphan.exists()
    assert linked_orphan.is_symlink() and target.read_bytes() == b"keep"  # a link is not ours to remove
    assert all((model_dir / n).read_bytes() == d for n, d in mine.items())
    assert set(registered) <= {p.name for p in model_dir.iterdir()}
    assert len(list((root / "vectors" / "not-a-model").iterdir())) == 3  # no model, no sweep


@pytest.mark.parametrize("damage", ["empty", "no-tables", "missing"])
def test_a_damaged_database_is_an_error_and_nothing_is_deleted(tmp_path: Path, damage: str,
                                                               capsys: pytest.CaptureFixture[str],
                                                               sweep_everything: None) -> None:
    root, model_dir = _workspace_with_vectors(tmp_path / "ws")
    before = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()
              and not p.name.startswith(DB_NAME)}
    db = root / DB_NAME
    if damage == "empty":
        db.write_bytes(b"")
    elif damage == "no-tables":
        db.unlink()
        import sqlite3

        conn = sqlite3.connect(db)  # a valid SQLite file that holds no table (a create cut short, say)
        conn.executescript("create table t (x); drop table t;")
        conn.close()
        assert db.stat().st_size > 0
    else:
        db.unlink()
    for command in (["info", "-w", str(root)], ["model", "list", "-w", str(root)]):
        assert main(command) == 1
        err = capsys.readouterr().err
        assert err.count("embridge: error:") == 1 and str(root) in err, err
    after = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()
             and not p.name.startswith(DB_NAME)}
    assert after == before
    assert len(list(model_dir.glob("*.npy"))) == 2


def test_export_with_overwrite_never_replaces_what_is_not_a_bundle(tmp_path: Path) -> None:
    from bundle_fixtures import build_upgrade_workspace

    from embridge.core.bundle import export_bundle

    info = build_upgrade_workspace(tmp_path / "ws", with_report=False)
    run = info["runs"]["v3_to_v1"]
    with Workspace.open(info["path"]) as ws:
        for out in (ws.root, ws.root / "vectors", ws.root / DB_NAME, tmp_path):
            with pytest.raises(InputError, match="workspace"):
                export_bundle(ws, out, [run], overwrite=True)
        assert len(list((ws.root / "vectors").rglob("*.npy"))) == 6
        first = export_bundle(ws, tmp_path / "b", [run])
        again = export_bundle(ws, tmp_path / "b", [run], overwrite=True)  # a bundle may be replaced
        assert again["path"] == first["path"] and again["bundle_id"] != first["bundle_id"]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "ws"]  # the old copy is gone, nothing else
        for name in ("b.tar.gz", "b.tgz", "b.7z"):  # a folder under an archive's name: refused, nothing written
            with pytest.raises(InputError, match=r"an archive a bundle is never written as; a bundle is a folder, "
                                                 r"or a name ending in \.zip"):
                export_bundle(ws, tmp_path / name, [run])
        assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "ws"]


@pytest.mark.parametrize("swap", [True, False], ids=["swapped-in-one-step", "system-without-swap"])
def test_an_overwrite_stopped_at_any_step_leaves_a_whole_bundle(tmp_path: Path, swap: bool,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A kill between moving the earlier bundle folder away and the new one in left an empty folder
    (the earlier bundle only in a temp folder no one sweeps). The earlier bundle stays until the new
    one is recorded, and a stop before that puts it back."""
    from bundle_fixtures import build_upgrade_workspace

    from embridge.core.bundle import bundle_export, export_bundle, verify_bundle
    from embridge.core.store.files import sha256_tree

    info = build_upgrade_workspace(tmp_path / "ws", with_report=False)
    out = tmp_path / "b"
    with Workspace.open(info["path"]) as ws:
        first = export_bundle(ws, out, [info["runs"]["v3_to_v1"]])
        before = sha256_tree(out)

        def killed(*args: object, **kwargs: object) -> None:
            raise KeyboardInterrupt

        swaps = []
        real_exchange = bundle_export.exchange
        monkeypatch.setattr(bundle_export, "exchange", lambda a, b: swaps.append(1) or (swap and real_exchange(a, b)))
        for stage in ("record",) if swap else ("publish_new", "record"):  # a swap has no step in between
            with monkeypatch.context() as m:
                if stage == "publish_new":  # stopped while the new folder takes the name
                    m.setattr(bundle_export, "publish_new", killed)
                else:  # stopped after it took the name, before the workspace recorded it
                    m.setattr(type(ws), "add_bundle", killed)
                with pytest.raises(KeyboardInterrupt):
                    export_bundle(ws, out, [info["runs"]["v3_to_v1"]], overwrite=True)
            assert sha256_tree(out) == before, stage  # the earlier bundle, whole, at its name
            verify_bundle(out)
            assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "ws"], stage  # no copy left aside
        again = export_bundle(ws, out, [info["runs"]["v3_to_v1"]], overwrite=True)
    assert swaps  # the swap was tried: on this system it succeeds, or it was made to fail
    assert again["bundle_id"] != first["bundle_id"] and sorted(p.name for p in tmp_path.iterdir()) == ["b", "ws"]
    verify_bundle(out)


def test_apply_writes_its_progress_file_before_the_partial_output(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A kill between creating OUT.npy.partial and its progress file left a partial output that every
    later apply refused as not its own. The progress file now comes first, and a rerun resumes."""
    from bundle_fixtures import build_upgrade_workspace

    from embridge.core.bundle import apply_bundle, export_bundle, transform_file
    from embridge.core.bundle.transform_file import partial_paths

    info = build_upgrade_workspace(tmp_path / "ws", with_report=False)
    with Workspace.open(info["path"]) as ws:
        export_bundle(ws, tmp_path / "b.zip", [info["runs"]["v3_to_v1"]])
    src, out = tmp_path / "q.npy", tmp_path / "y.npy"
    np.save(src, np.random.default_rng(2).standard_normal((300, 32)).astype(np.float32))
    partial, sidecar = partial_paths(out)
    real_create = transform_file.MatrixFile.create

    def killed_after_create(path: Path, *args: object) -> object:
        assert sidecar.is_file()  # the progress file is already there when the partial output appears
        real_create(path, *args).close()
        raise KeyboardInterrupt  # as if killed right after the partial output was made

    monkeypatch.setattr(transform_file.MatrixFile, "create", staticmethod(killed_after_create))
    with pytest.raises(KeyboardInterrupt):
        apply_bundle(tmp_path / "b.zip", src, out, chunk_rows=100)
    monkeypatch.undo()
    assert not partial.exists() and not sidecar.exists()  # stopped before any row: nothing left
    result = apply_bundle(tmp_path / "b.zip", src, out, chunk_rows=100)
    assert result["rows"] == 300 and out.is_file() and not partial.exists() and not sidecar.exists()


def test_apply_resumes_only_on_the_same_input_bytes(tmp_path: Path) -> None:
    """An input replaced by another of the same size and modification time starts over."""
    from bundle_fixtures import build_upgrade_workspace

    from embridge.core.bundle import apply_bundle, export_bundle

    info = build_upgrade_workspace(tmp_path / "ws", with_report=False)
    with Workspace.open(info["path"]) as ws:
        export_bundle(ws, tmp_path / "b.zip", [info["runs"]["v3_to_v1"]])
    rng = np.random.default_rng(5)
    first, second = (rng.standard_normal((300, 32)).astype(np.float32) for _ in range(2))
    src, out = tmp_path / "q.npy", tmp_path / "out" / "y.npy"
    np.save(src, first)
    stamp = os.stat(src).st_mtime_ns
    calls = []

    def stop_after_one_chunk() -> bool:
        calls.append(1)
        return len(calls) > 1

    with pytest.raises(Cancelled):
        apply_bundle(tmp_path / "b.zip", src, out, chunk_rows=100, should_stop=stop_after_one_chunk)
    np.save(src, second)  # same shape, so the same size; and the same time, as a careless copy keeps
    os.utime(src, ns=(stamp, stamp))
    assert os.stat(src).st_size == (tmp_path / "q.npy").stat().st_size
    result = apply_bundle(tmp_path / "b.zip", src, out, chunk_rows=100)
    assert result["resumed_from"] == 0
    fresh = apply_bundle(tmp_path / "b.zip", src, tmp_path / "fresh.npy", chunk_rows=100)
    np.testing.assert_array_equal(np.load(out), np.load(fresh["path"]))


# -- properties ----------------------------------------------------------------------------------
names = st.one_of(st.text(max_size=80), st.sampled_from(["..", ".", "../x", "a/b", "/abs", "C:\\x", "con", "a..b",
                                                           "v1", "model-2.0", "x" * 64, "x" * 65, " ", "a\0b"]))


@settings(max_examples=200, deadline=None)
@given(name=names)
def test_any_name_is_refused_or_stays_a_single_file_name(name: str) -> None:
    root = Path("/ws/models")
    try:
        checked = check_name(name)
    except InputError as exc:
        assert "file name" in str(exc)
        return
    assert checked == name and 1 <= len(name) <= 64
    path = root / f"{name}-0123456789ab.pt"
    assert path.parent == root and os.path.normpath(path) == str(path)
    assert not any(c in name for c in "/\\\0\n ") and ".." not in name


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=names)
def test_model_add_with_any_name_writes_only_inside_the_workspace(name: str, tmp_path: Path) -> None:
    from badinput_builders import state_checkpoint

    root = Path(tempfile.mkdtemp(dir=tmp_path))
    ckpt = state_checkpoint(root / "m.pt")
    ws_root = root / "ws"
    Workspace.create(ws_root).close()
    outside_before = sorted(p for p in root.rglob("*") if not is_within(p, ws_root))
    code = main(["model", "add", "-w", str(ws_root), "--name", name, "--path", str(ckpt)])
    assert code in (0, 1, 2)  # 2: a name refused by its form, as argparse refuses an option's value
    assert sorted(p for p in root.rglob("*") if not is_within(p, ws_root)) == outside_before
    stored = [p for p in (ws_root / "models").rglob("*") if p.is_file()]
    assert len(stored) == (1 if code == 0 else 0)
    assert all(p.parent == ws_root / "models" for p in stored)


parts = st.lists(st.sampled_from(["..", ".", "ws", "vectors", "in", "b.zip", "q.npy", "x", "unzipped"]),
                 min_size=0, max_size=5)


@settings(max_examples=300, deadline=None)
@given(out=parts)
def test_an_accepted_output_never_touches_the_workspace_or_an_input(out: list[str]) -> None:
    base = Path("/tmp/embridge-property-root")
    ws, inputs = base / "ws", [base / "in" / "b.zip", base / "in" / "q.npy", base / "in" / "unzipped"]
    target = base.joinpath(*out)
    try:
        check_output(target, workspace=ws, inputs=inputs)
    except InputError:
        return
    real = Path(os.path.normpath(target))
    for kept in (ws, *inputs):
        common = os.path.commonpath([real, kept])
        assert common not in (str(real), str(kept)), (real, kept)  # neither holds the other, nor equal


@settings(max_examples=300, deadline=None)
@given(raw=st.one_of(st.text(max_size=12), st.floats().map(repr), st.integers(-10**12, 10**12).map(str)),
       low=st.integers(-5, 5), span=st.integers(0, 100), is_int=st.booleans(), low_open=st.booleans())
def test_a_numeric_option_is_finite_and_in_range_or_refused(raw: str, low: int, span: int, is_int: bool,
                                                            low_open: bool) -> None:
    parse = number(int if is_int else float, low=low, high=low + span, low_open=low_open)
    try:
        value = parse(raw)
    except argparse.ArgumentTypeError as exc:
        assert raw in str(exc) and "expected" in str(exc)
        return
    assert math.isfinite(value) and (isinstance(value, int) if is_int else isinstance(value, float))
    assert (value > low if low_open else value >= low) and value <= low + span


def test_every_numeric_option_of_every_command_is_validated() -> None:
    """No command keeps a bare int/float option: each one's type is a checked ``number``."""
    from embridge.core.cli.main import build_parser

    def walk(parser: argparse.ArgumentParser, path: str) -> list[tuple[str, str, object]]:
        found = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found += walk(sub, f"{path} {name}")
            elif action.type is not None:
                found.append((path, action.option_strings[0] if action.option_strings else action.dest, action.type))
        return found

    options = walk(build_parser(), "embridge")
    assert len(options) >= 20
    bare = [(cmd, flag) for cmd, flag, kind in options if kind in (int, float)]
    assert not bare, bare
    from embridge.core.cli.option_types import NON_BLANK, PATH

    paths = [(cmd, flag) for cmd, flag, kind in options if kind is PATH]  # files, folders, stores: not numbers
    assert ("embridge import", "--path") in paths and ("embridge bundle apply", "--out") in paths
    for _cmd, _flag, kind in options:  # a path or a name refuses a blank value, a number NaN
        with pytest.raises(argparse.ArgumentTypeError):
            kind(" " if kind in (PATH, NON_BLANK) else "nan")


def test_the_store_refuses_a_name_that_is_a_path(tmp_path: Path) -> None:
    with Workspace.create(tmp_path / "ws") as ws:
        for bad in ("../../x", "a/b", "", ".hidden"):
            with pytest.raises(InputError, match="file name"):
                ws.add_model(bad, "old", {"kind": "vectors", "dim": 2, "sha256": "0" * 64}, None)
        ws.add_model("m", "old", {"kind": "vectors", "dim": 2, "sha256": "0" * 64}, None)
        with pytest.raises(InputError, match="vector set name"):
            ws.add_vector_set("m", ws.add_items([{"key": "a"}]), np.ones((1, 2)), name="../evil")
        with pytest.raises(StoreError):
            ws.add_model("m", "new", {"kind": "vectors", "dim": 2, "sha256": "0" * 64}, None)
    assert not (tmp_path / "evil").exists() and not (tmp_path / "x").exists()


@pytest.mark.parametrize("stored_as", ["../precious.pt", "vectors/m/KEEP", "models/../../precious.pt", "models"])
def test_model_remove_deletes_only_its_copy_inside_models(tmp_path: Path, stored_as: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """An edited database cannot make ``model remove`` delete a file outside ``models/``."""
    root, folder = _workspace_with_vectors(tmp_path / "ws")
    precious = tmp_path / "precious.pt"
    precious.write_bytes(b"a checkpoint the user keeps")
    with Workspace.open(root) as ws:
        ws.add_model("m3", "other", {"kind": "torchscript", "dim": DIM, "sha256": "1" * 64}, precious)
        (copy,) = (root / "models").iterdir()
        vector_file = next(p for p in folder.iterdir() if p.suffix == ".npy")
        target = stored_as.replace("KEEP", vector_file.name)
        with ws.transaction():
            ws.db.execute("update models set file = ? where name = 'm3'", [target])
    code = main(["model", "remove", "--name", "m3", "-w", str(root)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and f"names its stored copy '{target}'" in err, err
    assert precious.read_bytes() == b"a checkpoint the user keeps" and vector_file.is_file() and copy.is_file()
    with Workspace.open(root) as ws:
        assert ws.has_model("m3")
    with Workspace.open(root) as ws:  # the row put back as model add wrote it: removed with its copy
        with ws.transaction():
            ws.db.execute("update models set file = ? where name = 'm3'", [f"models/{copy.name}"])
    assert main(["model", "remove", "--name", "m3", "-w", str(root)]) == 0
    assert not copy.exists() and precious.is_file() and vector_file.is_file()


def test_vectors_of_a_model_renamed_away_do_not_advise_embedding_it(tmp_path: Path) -> None:
    """A command that loses its model to a rename in another process says so, not 'embed it'."""
    root, _ = _workspace_with_vectors(tmp_path / "ws")
    with Workspace.open(root) as ws:
        ids = ws.item_ids()
        ws.rename_model("m", "m2")
        with pytest.raises(StoreError, match=r"no model named 'm' \(renamed or removed while this command ran\?\)"):
            ws.vectors_for("m", ids)
        assert ws.vectors_for("m2", ids).shape == (3, DIM)


def test_a_rename_leaves_the_runs_of_an_earlier_model_of_the_name_alone(tmp_path: Path) -> None:
    """A model removed and another added under its name: renaming the new one renamed the removed one's
    runs too ('#4 embed/m3b failed' for a run of a model that is gone)."""
    from embridge.core.models.manage import remove_model

    with Workspace.create(tmp_path / "ws") as ws:
        ws.add_items([{"key": f"k{i}"} for i in range(3)])
        spec = {"kind": "vectors", "dim": DIM, "sha256": "0" * 64}
        ws.add_model("m3", "old", spec, None)
        earlier_embed = ws.start_run("embed", "m3", {"model": "m3"})
        earlier_train = ws.start_run("train", "affine", {"old": "m3", "new": "x"})
        remove_model(ws, "m3")
        ws.db.execute("update runs set started = '2020-01-01T00:00:00+00:00'")  # before the next m3 was added
        ws.add_model("m3", "old", spec, None)
        later = ws.start_run("embed", "m3", {"model": "m3"})
        ws.rename_model("m3", "m3b")
        assert (ws.run(earlier_embed)["method"], ws.run(earlier_train)["config"]["old"]) == ("m3", "m3")
        assert ws.run(later)["method"] == "m3b"


def test_a_checkpoint_copy_no_model_names_is_swept_and_nothing_else(tmp_path: Path, sweep_everything: None) -> None:
    """A `model remove` killed between its commit and the unlink left the copy in models/ for good."""
    root = tmp_path / "ws"
    src = tmp_path / "m.pt"
    src.write_bytes(b"weights")
    with Workspace.create(root) as ws:
        ws.add_model("kept", "old", {"kind": "torchscript", "dim": DIM, "sha256": "a" * 64}, src)
    models = root / "models"
    kept = next(models.iterdir()).name
    def named(stem: str, data: bytes, suffix: str = "") -> tuple[str, bytes]:  # as add_model names its copies
        return f"{stem}-{hashlib.sha256(data).hexdigest()[:12]}{suffix}", data

    gone, notes = named("gone", b"left by a killed remove", ".pt"), named("bge.v1.5", b"no suffix, still the pattern")
    names = dict([gone, notes, ("mine.pt", b"the user's"), ("My Copy-0123456789ab.pt", b"not our name"),
                  ("emb-202401151230.npz", b"the user's, named by a timestamp")])  # not its content's hash
    for name, data in names.items():
        (models / name).write_bytes(data)
    (models / "linked-0123456789ab.pt").symlink_to(src)  # a link is never ours to remove
    Workspace.open(root).close()
    left = {p.name for p in models.iterdir()}
    assert gone[0] not in left and notes[0] not in left
    assert {kept, "mine.pt", "My Copy-0123456789ab.pt", "linked-0123456789ab.pt", "emb-202401151230.npz"} <= left
    assert src.read_bytes() == b"weights"


def test_a_layer_file_no_layer_row_names_is_swept_and_a_registered_one_is_kept(tmp_path: Path,
                                                                                sweep_everything: None) -> None:
    """A training killed between copying its layer into adapters/ and registering it left the file for good:
    no sweep looked there, and `info --verify` said nothing of it."""
    root = tmp_path / "ws"
    src = tmp_path / "layer.pt"
    src.write_bytes(b"a trained layer")
    with Workspace.create(root) as ws:
        ws.add_model("old", "old", {"kind": "vectors", "dim": DIM, "sha256": "a" * 64}, None)
        ws.add_model("new", "new", {"kind": "vectors", "dim": DIM, "sha256": "b" * 64}, None)
        run = ws.start_run("train", "procrustes", {})
        kept = ws.add_adapter(run, "procrustes", "backward", DIM, DIM, "new", "old", src, {})
    lost = f"procrustes-run2-{hashlib.sha256(b'another layer').hexdigest()[:12]}.pt"  # as add_adapter names it
    (root / "adapters" / lost).write_bytes(b"another layer")
    (root / "adapters" / "notes.pt").write_bytes(b"not a name Embridge gives")
    kept_name = Path(kept["file"]).name
    backups = [kept_name + ".bak", kept_name.replace(".pt", ".orig.pt"),  # a user's copies of a layer: they hash
               f"backup-{kept['sha256'][:12]}.pt"]  # to their names, but are not names a layer gets
    for name in backups:
        shutil.copyfile(root / "adapters" / kept_name, root / "adapters" / name)
    Workspace.open(root).close()
    assert sorted(p.name for p in (root / "adapters").iterdir()) == sorted([kept_name, "notes.pt", *backups])


@pytest.mark.parametrize("change", ["rename", "replace"])
def test_a_layer_whose_model_was_renamed_or_replaced_while_it_trained_is_not_stored(
        demo_copy: Path, monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    """A rename landing after the vectors were read stored the layer under the old name: reports then
    failed ("only 0 items have vectors under both"), or measured whichever model took that name later."""
    from embridge.core.models.manage import rename_model
    from embridge.core.train import runs as train_runs

    measured = train_runs.heldout_numbers

    def then_change(ws: Workspace, *args: Any, **kwargs: Any) -> dict[str, Any]:
        out = measured(ws, *args, **kwargs)
        with Workspace.open(demo_copy) as other:  # another process's command, between fit and store
            new = other.model_by_role("new")
            rename_model(other, new["name"], "renamed")
            if change == "replace":  # and a different model under the freed name
                other.add_model(new["name"], "other", {"kind": "vectors", "dim": 3, "sha256": "2" * 64}, None)
        return out

    monkeypatch.setattr(train_runs, "heldout_numbers", then_change)
    with Workspace.open(demo_copy) as ws:
        new_name = ws.model_by_role("new")["name"]
        with pytest.raises(StoreError, match=f"model '{new_name}' was renamed, removed or replaced while this "
                                             "layer was trained; nothing was stored"):
            train_runs.train_run(ws, "procrustes", device="cpu")
        assert ws.adapters() == [] and list((demo_copy / "adapters").glob("*.pt")) == []
        (run,) = ws.runs("train")
        assert run["status"] == "failed"


def test_a_vectors_file_a_model_references_inside_models_is_never_swept(tmp_path: Path, sweep_everything: None,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A vectors-only model references its file where it lies; one the user kept in the workspace's models/
    under a name ending in 12 hex digits (a timestamp) was deleted as a stored copy no model named."""
    root = tmp_path / "ws"
    assert main(["init", "-w", str(root)]) == 0
    users = root / "models" / "emb-202401151230.npz"
    rng = np.random.default_rng(0)
    np.savez(users, ids=np.array([f"k{i}" for i in range(20)]), vectors=rng.normal(size=(20, DIM)).astype(np.float32))
    data = users.read_bytes()
    assert main(["model", "add", "-w", str(root), "--name", "emb", "--path", str(users)]) == 0
    Workspace.open(root).close()  # every file in models/ counts as an hour old
    assert users.read_bytes() == data
    capsys.readouterr()
    assert main(["info", "-w", str(root), "--verify"]) == 0, capsys.readouterr().out
