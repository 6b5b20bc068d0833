"""A corpus of malformed inputs, generated on the fly, for the command line and the app.

Each :class:`Case` builds one bad input in a fresh folder (a checkpoint, a vector file, items to
import, a bundle, or a damaged workspace database), gives the ``embridge`` arguments that feed
it in, and a regex the one-line error must match. The error must also name ``bad``, the path (or
object) the builder returns. ``app`` says which desktop action can meet the same input.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import badinput_builders as mk
import numpy as np
import pytest
from badinput_builders import Env
from helpers.workspace_files import snapshot

__all__ = ["CORPUS", "Case", "Env", "corpus_base", "make_env", "option", "state"]

MODEL_ADD = ("model", "add", "-w", "{ws}", "--name", "x", "--path", "{bad}")
IMPORT = ("import", "-w", "{ws}", "--path", "{bad}")
IMPORT_V1 = (*IMPORT, "--model", "v1")  # v1: the 16-d embeddings-only model of the workspace
VERIFY = ("bundle", "verify", "{bad}")


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Env], Path | str]
    args: tuple[str, ...]
    expect: str  # regex searched in the error line
    app: str | None = None  # "model", "import", "verify" or "open"

    def argv(self, env: Env, bad: Path | str) -> list[str]:
        subs = {"ws": env.ws, "bad": bad, "in": env.inputs, "bundle": env.bundle}
        return [a.format(**subs) for a in self.args]


# -- the corpus -------------------------------------------------------------------------------
def _import(folder: str) -> tuple[str, ...]:
    """Import a folder of the inputs, for cases whose error names a file inside it."""
    return ("import", "-w", "{ws}", "--path", "{in}/" + folder)


def _c(name: str, build: Callable[[Env], Path | str], args: tuple[str, ...], expect: str,
       app: str | None = None) -> Case:
    return Case(name, build, args, expect, app)


CORPUS: list[Case] = [
    # checkpoints
    _c("ckpt-empty-file", lambda e: mk.write(e.inputs / "empty.pt", b""), MODEL_ADD, "file is empty"),
    _c("ckpt-random-bytes", lambda e: mk.write(e.inputs / "noise.pt", np.random.default_rng(0).bytes(4096)),
       MODEL_ADD, "not a readable PyTorch checkpoint", app="model"),
    _c("ckpt-truncated-torchscript", lambda e: mk.truncated(mk.scripted(e.inputs / "cut.ts")), MODEL_ADD,
       "truncated|unreadable"),
    _c("ckpt-truncated-state-dict", lambda e: mk.truncated(mk.state_checkpoint(e.inputs / "cut.pt")), MODEL_ADD,
       "truncated|unreadable"),
    _c("ckpt-pickle-runs-code-torch-save", lambda e: mk.code_pickle(e, True), MODEL_ADD,
       "refused: the file needs arbitrary code to load", app="model"),
    _c("ckpt-pickle-runs-code-plain-pickle", lambda e: mk.code_pickle(e, False), MODEL_ADD,
       "refused: the file needs arbitrary code to load"),
    _c("ckpt-nan-weights", lambda e: mk.state_checkpoint(e.inputs / "nan.pt", nan=True), MODEL_ADD,
       "output holds NaN", app="model"),
    _c("ckpt-inf-output", lambda e: mk.scripted(e.inputs / "inf.ts", "inf"), MODEL_ADD, "NaN or inf"),
    _c("ckpt-3d-output", lambda e: mk.scripted(e.inputs / "3d.ts", "3d"), MODEL_ADD, "must return a 2-D"),
    _c("ckpt-unknown-architecture", mk.unknown_arch, MODEL_ADD, "unknown architecture 'resnet9000'"),
    _c("ckpt-dimension-mismatch", lambda e: mk.state_checkpoint(e.inputs / "dims.pt", {"input_dim": 8, "out_dim": 6}),
       MODEL_ADD, "weights do not fit architecture 'mlp'.*size mismatch"),
    _c("ckpt-missing-file", lambda e: e.inputs / "absent.pt", MODEL_ADD, "file not found"),
    _c("ckpt-wrong-input-shape", lambda e: mk.state_checkpoint(e.inputs / "shape.pt"),
       (*MODEL_ADD, "--input-shape", "1,28,28"), r"takes input shape \(8,\), not \(1, 28, 28\)"),
    _c("ckpt-unknown-kind", lambda e: mk.state_checkpoint(e.inputs / "kind.pt"), (*MODEL_ADD, "--kind", "tflite"),
       "unknown model kind 'tflite'"),
    _c("ckpt-not-a-weights-dict", mk.list_payload, MODEL_ADD, "expected a dict of weights, found list"),
    _c("ckpt-vectors-duplicate-ids", lambda e: mk.npz(e.inputs / "dup.npz", np.zeros((3, 4)), ["a", "b", "a"]),
       MODEL_ADD, "duplicate ids"),
    _c("ckpt-vectors-huge-header", mk.huge_npz, MODEL_ADD, "claims 4000000000000000000 bytes", app="model"),
    # vector files
    _c("vectors-nan", lambda e: mk.npz(e.inputs / "nan.npz", mk.bad_values(np.nan)), IMPORT_V1, "row 2 holds NaN"),
    _c("vectors-inf", lambda e: mk.npz(e.inputs / "inf.npz", mk.bad_values(np.inf)), IMPORT_V1, "NaN or inf"),
    _c("vectors-string-dtype", lambda e: mk.npz(e.inputs / "str.npz", np.array([["a"] * 16] * 2)), IMPORT_V1,
       "must be numeric"),
    _c("vectors-complex-dtype", lambda e: mk.npz(e.inputs / "cx.npz", np.ones((2, 16), complex)), IMPORT_V1,
       "must be numeric, got dtype complex128"),
    _c("vectors-object-pickle", lambda e: mk.npz(e.inputs / "obj.npz", np.ones((2, 16)).astype(object)), IMPORT_V1,
       "Object arrays cannot be loaded when allow_pickle=False", app="import"),
    _c("vectors-count-mismatch", lambda e: mk.npz(e.inputs / "count.npz", np.ones((3, 16)), ["a", "b", "c", "d"]),
       IMPORT_V1, "3 vectors but 4 ids"),
    _c("vectors-dimension-mismatch", lambda e: mk.npz(e.inputs / "dim.npz", np.ones((2, 5))), IMPORT_V1,
       "5-d vectors, but model 'v1' gives 16-d vectors"),
    _c("vectors-duplicate-ids", lambda e: mk.npz(e.inputs / "dup.npz", np.ones((3, 16)), ["a", "b", "a"]),
       IMPORT_V1, r"duplicate ids, e\.g\. \['a'\]"),
    _c("vectors-ids-already-in-workspace", lambda e: mk.npz(e.inputs / "old.npz", np.ones((2, 16)),
                                                           ["fresh", "item-003"]),
       IMPORT_V1, "1 keys already exist in the workspace, e.g. item-003"),
    _c("vectors-missing-ids-array", lambda e: mk.write(e.inputs / "noids.npz", mk.savez_bytes(vectors=np.ones((2, 16)))),
       IMPORT_V1, "needs arrays 'ids' and 'vectors'"),
    _c("vectors-empty-file", lambda e: mk.write(e.inputs / "empty.npz", b""), IMPORT_V1, "unreadable vector file"),
    _c("vectors-no-rows", lambda e: mk.npz(e.inputs / "none.npz", np.ones((0, 16)), []), IMPORT_V1,
       "holds no vectors"),
    _c("vectors-one-dimensional", lambda e: mk.npz(e.inputs / "flat.npz", np.ones(16)), IMPORT_V1,
       r"2-D matrix, got shape \(16,\)"),
    _c("vectors-npy-header-claims-huge-shape", lambda e: mk.npy_with_ids(e, "huge.npy", mk.npy_header((10**12, 10**6))),
       (*IMPORT_V1, "--ids", "{in}/ids.txt"), "header claims 4000000000000000000 bytes of data", app="import"),
    _c("vectors-npy-truncated", lambda e: mk.npy_with_ids(e, "cut.npy", mk.npy_header((2, 16), b"\0" * 40)),
       (*IMPORT_V1, "--ids", "{in}/ids.txt"), r"claims 128 bytes of data but the file holds 40 \(truncated"),
    _c("vectors-npy-giant-header-text", lambda e: mk.npy_with_ids(e, "hdr.npy", mk.npy_header((2, 16), pad_header=50_000)),
       (*IMPORT_V1, "--ids", "{in}/ids.txt"), "unreadable vector file .*[Hh]eader"),
    _c("vectors-npy-without-id-list", lambda e: mk.apply_input(e, "lonely.npy", np.ones((2, 16), np.float32)),
       IMPORT_V1, "needs an id list"),
    # items
    _c("csv-empty", lambda e: mk.write(e.inputs / "empty.csv", ""), IMPORT, "the file is empty"),
    _c("csv-no-text-column", lambda e: mk.write(e.inputs / "cols.csv", "key,body\na,x\n"), IMPORT, "no 'text' column"),
    _c("csv-duplicate-keys", lambda e: mk.write(e.inputs / "dup.csv", "key,text\na,x\nb,y\na,z\n"), IMPORT,
       "duplicate keys in the input: a", app="import"),
    _c("csv-keys-already-in-workspace", lambda e: mk.write(e.inputs / "again.csv", "key,text\nitem-107,x\n"), IMPORT,
       "already exist in the workspace, e.g. item-107"),
    _c("csv-empty-text", lambda e: mk.write(e.inputs / "blank.csv", "key,text\na,ok\nb,\n"), IMPORT,
       "record 2: missing or empty 'text'"),
    _c("csv-not-utf8", lambda e: mk.write(e.inputs / "latin.csv", b"key,text\na,caf\xe9\n"), IMPORT, "not UTF-8"),
    _c("jsonl-bad-json", lambda e: mk.write(e.inputs / "bad.jsonl", '{"text": "ok"}\n{oops\n'), IMPORT,
       "line 2: invalid JSON", app="import"),
    _c("jsonl-not-an-object", lambda e: mk.write(e.inputs / "list.jsonl", '["a", "b"]\n'), IMPORT,
       "line 1: expected a JSON object"),
    _c("images-symlink-outside-folder", mk.symlinked_file, _import("linked"),
       "symbolic link to .*outside the imported folder", app="import"),
    _c("images-symlinked-label-folder", mk.symlinked_label, _import("linked-label"), "outside the imported folder"),
    _c("images-loose-files", mk.loose_images, IMPORT, "put them in one sub-folder per label"),
    _c("images-none-found", mk.empty_label_folder, IMPORT, "no image files found"),
    _c("images-empty-file", mk.empty_image, _import("zero"), "image file is empty"),
    _c("import-missing-path", lambda e: e.inputs / "nowhere.csv", IMPORT, "no such file or folder"),
    _c("import-unknown-suffix", lambda e: mk.write(e.inputs / "items.xlsx", "x"), IMPORT, "cannot tell the format"),
    # bundles
    _c("bundle-member-escapes-folder", lambda e: mk.rezip(e, "slip.zip", extra=[("../evil", b"x")]), VERIFY,
       "points outside the bundle", app="verify"),
    _c("bundle-member-absolute-path", lambda e: mk.rezip(e, "abs.zip", extra=[("/tmp/evil", b"x")]), VERIFY,
       "absolute path"),
    _c("bundle-symlink-member", mk.symlink_member, VERIFY, "probes/link is a symbolic link"),
    _c("bundle-member-claims-huge-size", mk.claims_huge_size, VERIFY,
       r"probes/inputs\.npy is 1125899906842624 bytes, over the \d+-byte cap", app="verify"),
    _c("bundle-zip-bomb", lambda e: mk.rezip(e, "bomb.zip", extra=[("probes/zeros.bin", bytes(12 << 20))]),
       (*VERIFY, "--max-total-mb", "8"), "possible zip bomb"),
    _c("bundle-changed-byte", mk.flip_byte, VERIFY, r"adapter\.pt was changed after export", app="verify"),
    _c("bundle-unknown-format-version",
       lambda e: mk.forged(e, "v2.zip", lambda m: m.update(format_version=2)), VERIFY, "bundle format 2 is not supported"),
    _c("bundle-probe-header-claims-huge-shape",
       lambda e: mk.forged(e, "probe.zip", files={"probes/inputs.npy": mk.npy_header((10**12, 16))}), VERIFY,
       r"probes/inputs\.npy is not a plain \.npy array"),
    _c("bundle-duplicate-member", mk.duplicate_member, VERIFY, "README.md appears twice"),
    _c("bundle-missing-manifest", lambda e: mk.rezip(e, "nomanifest.zip", drop=("manifest.json",)), VERIFY,
       "manifest.json is missing"),
    _c("bundle-truncated-zip", lambda e: mk.write(e.inputs / "half.zip", e.bundle.read_bytes()[:3000]), VERIFY,
       "not a bundle"),
    _c("bundle-empty-file", lambda e: mk.write(e.inputs / "empty.zip", b""), VERIFY, "not a bundle"),
    _c("bundle-apply-wrong-dimension", lambda e: mk.apply_input(e, "d5.npy", np.ones((3, 5), np.float32)),
       ("bundle", "apply", "{bundle}", "--vectors", "{bad}", "--out", "{in}/out.npy"),
       r"vectors have shape \(3, 5\); the bundle's adapter expects \(n, 32\)"),
    _c("bundle-apply-nan-vectors", lambda e: mk.apply_input(e, "nan.npy", mk.nan_rows(32)),
       ("bundle", "apply", "{bundle}", "--vectors", "{bad}", "--out", "{in}/out.npy"), "NaN"),
    # the workspace database
    _c("db-corrupt", lambda e: mk.write(mk.db(e), np.random.default_rng(1).bytes(8192)), ("info", "-w", "{ws}"),
       "the workspace database is corrupt", app="open"),
    _c("db-truncated", lambda e: mk.write(mk.db(e), mk.db(e).read_bytes()[:6000]), ("info", "-w", "{ws}"),
       "corrupt or not a database"),
    _c("db-newer-schema-version", lambda e: mk.edit_db(e, "update meta set value = '99' where key = 'schema_version'"),
       ("info", "-w", "{ws}"), "schema version 99 is newer than this Embridge understands", app="open"),
    _c("db-garbled-schema-version", lambda e: mk.edit_db(e, "update meta set value = 'v1.x' where key = 'schema_version'"),
       ("info", "-w", "{ws}"), "unknown workspace schema version", app="open"),
    _c("db-from-another-program", mk.foreign_db, ("info", "-w", "{ws}"), "not an Embridge workspace database",
       app="open"),
    _c("db-missing", mk.no_workspace, ("info", "-w", "{bad}"), r"not an Embridge workspace \(no embridge\.db\)",
       app="open"),
    _c("db-locked-by-another-writer", mk.locked_db, ("import", "-w", "{ws}", "--path", "{in}/good.csv"),
       r"the workspace is busy \(another process is writing\)"),
    _c("ws-vector-file-changed", mk.tampered_vectors, ("train", "-w", "{ws}", "--method", "procrustes", "--old", "v1",
                                                     "--new", "v3"), "checksum mismatch"),
]


def option(args: tuple[str, ...], flag: str) -> str | None:
    """The value given to ``flag`` in a case's arguments, if any."""
    return args[args.index(flag) + 1] if flag in args else None


@pytest.fixture(scope="session")
def corpus_base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A workspace with items, three embeddings-only models, runs and adapters, and a good bundle."""
    from bundle_fixtures import build_upgrade_workspace

    from core.bundle import export_bundle
    from core.store import Workspace

    root = tmp_path_factory.mktemp("corpus")
    info = build_upgrade_workspace(root / "ws", with_report=False)
    with Workspace.open(info["path"]) as ws:
        export_bundle(ws, root / "good.zip", [info["runs"]["v3_to_v1"]])
    return {"ws": root / "ws", "bundle": root / "good.zip"}


def make_env(workspace: Path, bundle: Path, root: Path) -> Env:
    """A fresh copy of ``workspace`` and an empty inputs folder under ``root``."""
    import shutil

    shutil.copytree(workspace, root / "ws")
    (root / "inputs").mkdir()
    return Env(root=root, ws=root / "ws", inputs=root / "inputs", bundle=bundle)


EMPTY_SHA = hashlib.sha256(b"").hexdigest()


def state(root: Path) -> dict[str, str]:
    """Every file's sha256 under ``root`` (an empty WAL holds no data and is left out too)."""
    return {k: v for k, v in snapshot(root).items() if not (k.endswith("-wal") and v == EMPTY_SHA)}
