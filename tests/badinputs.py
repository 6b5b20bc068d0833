"""A corpus of malformed inputs, generated on the fly, for the command line and the app.

Each :class:`Case` builds one bad input in a fresh folder (a checkpoint, a vector file, items to
import, a bundle, or a damaged workspace database), gives the ``embridge`` arguments that feed
it in, and a regex the one-line error must match. The error must also name ``bad``, the path (or
object) the builder returns. ``app`` says which desktop action can meet the same input.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import badinput_builders as mk
import import_builders as ib
import numpy as np
import pytest
from badinput_builders import Env
from helpers.workspace_files import snapshot

__all__ = ["CORPUS", "Case", "Env", "corpus_base", "make_env", "option", "state"]

MODEL_ADD = ("model", "add", "-w", "{ws}", "--name", "x", "--path", "{bad}")
IMPORT = ("import", "-w", "{ws}", "--path", "{bad}")
IMPORT_V1 = (*IMPORT, "--model", "v1")  # v1: the 16-d embeddings-only model of the workspace


def _spread(rows: int, scale: float = 1.0, row: int | None = None) -> np.ndarray:
    """``rows`` 16-d float64 vectors pointing different ways; ``row`` alone scaled by ``scale``."""
    vectors = np.random.default_rng(rows).normal(size=(rows, 16))
    if row is not None:
        vectors[row] *= scale
    return vectors
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
       IMPORT_V1, "1 key already exists in the workspace: item-003"),
    _c("vectors-missing-ids-array", lambda e: mk.write(e.inputs / "noids.npz", mk.savez_bytes(vectors=np.ones((2, 16)))),
       IMPORT_V1, "needs arrays 'ids' and 'vectors'"),
    _c("vectors-misspelt-query-arrays", lambda e: mk.write(e.inputs / "qmiss.npz", mk.savez_bytes(
        ids=np.array(["fresh-1", "fresh-2"]), vectors=np.ones((2, 16)), query_id=np.array(["q"]),
        query_vector=np.ones((1, 16)))), IMPORT_V1, r"holds arrays Embridge does not read \(query_id, query_vector\)"),
    _c("vectors-nan-in-a-query-row", lambda e: mk.write(e.inputs / "qnan.npz", mk.savez_bytes(
        ids=np.array(["fresh-1"]), vectors=np.ones((1, 16)), query_ids=np.array(["qa", "qb", "qc"]),
        query_vectors=np.vstack([np.ones((2, 16)), np.full((1, 16), np.nan)]))), IMPORT_V1,
       "query_vectors row 2 holds NaN or inf values"),
    # a zip member the zip module cannot read, and text beyond Unicode: each raised an error no reader expected
    _c("vectors-ids-beyond-unicode", lambda e: mk.npz_with_edited_ids(e.inputs / "u.npz", "codepoint"), IMPORT_V1,
       r"id 2 is not Unicode text \(it holds code point 0x110000"),
    _c("vectors-unreadable-compression", lambda e: mk.npz_with_edited_ids(e.inputs / "m.npz", "method"), IMPORT_V1,
       "member ids.npy uses zip compression method 93"),
    _c("ckpt-vectors-encrypted-member", lambda e: mk.npz_with_edited_ids(e.inputs / "enc.npz", "encrypted"),
       MODEL_ADD, "member ids.npy is encrypted"),
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
       "duplicate keys in the input: 'a' \\(each item needs a key of its own\\)", app="import"),
    _c("csv-keys-already-in-workspace", lambda e: mk.write(e.inputs / "again.csv", "key,text\nitem-107,x\n"), IMPORT,
       "1 key already exists in the workspace: item-107"),
    _c("csv-empty-text", lambda e: mk.write(e.inputs / "blank.csv", "key,text\na,ok\nb,\n"), IMPORT,
       r"line 3 \(record 2\): missing or empty 'text'"),
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
       lambda e: mk.forged(e, "v3.zip", lambda m: m.update(format_version=3)), VERIFY, "bundle format 3 is not supported"),
    _c("bundle-probe-header-claims-huge-shape",
       lambda e: mk.forged(e, "probe.zip", files={"probes/inputs.npy": mk.npy_header((10**12, 16))}), VERIFY,
       r"probes/inputs\.npy is not a plain \.npy array"),
    _c("bundle-duplicate-member", mk.duplicate_member, VERIFY, "README.md appears twice"),
    _c("bundle-missing-manifest", lambda e: mk.rezip(e, "nomanifest.zip", drop=("manifest.json",)), VERIFY,
       "manifest.json is missing"),
    _c("bundle-truncated-zip", lambda e: mk.write(e.inputs / "half.zip", e.bundle.read_bytes()[:3000]), VERIFY,
       "a damaged or truncated zip archive"),
    _c("bundle-cut-after-a-zipped-member", mk.cut_after_zipped_member, VERIFY, "a damaged or truncated zip archive"),
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


# -- hostile imports: keys, ids, labels, headers that lie, images that are not what they say -----
IDS_LIST = ("import", "-w", "{ws}", "--path", "{in}/vec.npy", "--model", "v1", "--ids", "{bad}")
NPY_IN = (*IMPORT_V1, "--ids", "{in}/ids.txt")
APPLY = ("bundle", "apply", "{bundle}", "--vectors", "{bad}", "--out", "{in}/out.npy")
TWO = np.ones((2, 16), np.float32)


def _ids(name: str, ids: np.ndarray, vectors: np.ndarray = TWO) -> Callable[[Env], Path]:
    return lambda e: ib.npz_arrays(e.inputs / name, ids, vectors)


def _text(name: str, content: str | bytes) -> Callable[[Env], Path]:
    return lambda e: mk.write(e.inputs / name, content)


def _npy_image(folder: str, raw: Callable[[], bytes]) -> Callable[[Env], Path]:
    return lambda e: ib.npy_image(e, folder, "pixels.npy", raw())


def _seeded(key: str, build: Callable[[Env], Path]) -> Callable[[Env], Path]:
    def run(e: Env) -> Path:
        ib.with_existing_key(e, key)
        return build(e)
    return run


def _env(name: str, value: str, build: Callable[[Env], Path | str], bad: str | None = None) -> Callable[[Env], Path | str]:
    def run(e: Env) -> Path | str:
        e.environ[name] = value
        out = build(e)
        return bad or out
    return run


CAFE_NFC, CAFE_NFD = "caf\u00e9", "cafe\u0301"
CORPUS += [
    # limits set through the environment
    _c("bundle-size-limit-env-not-a-number", _env("EMBRIDGE_BUNDLE_MAX_MEMBER_MB", "abc", lambda e: e.bundle,
                                                                   "EMBRIDGE_BUNDLE_MAX_MEMBER_MB"),
       ("bundle", "verify", "{bundle}"), r"EMBRIDGE_BUNDLE_MAX_MEMBER_MB: must be a size in MiB \(a number\), got 'abc'"),
    _c("bundle-size-limit-env-nan", _env("EMBRIDGE_BUNDLE_MAX_TOTAL_MB", "nan", lambda e: e.bundle,
                                                          "EMBRIDGE_BUNDLE_MAX_TOTAL_MB"),
       ("bundle", "inspect", "{bundle}"), r"EMBRIDGE_BUNDLE_MAX_TOTAL_MB: .* at least .*, got 'nan'"),
    # .npz ids and headers
    _c("vectors-zero-byte-ids-claim-3e8-rows", lambda e: ib.zero_byte_ids(e, 300_000_000, 2), IMPORT_V1,
       "2 vectors but 300000000 ids", app="import"),
    _c("vectors-zero-byte-ids-match-the-rows", lambda e: ib.zero_byte_ids(e, 2, 2), IMPORT_V1,
       r"all 2 ids are empty strings \(dtype <U0\)"),
    _c("vectors-zero-width-claim-3e8-rows", lambda e: ib.zero_byte_ids(e, 300_000_000, 300_000_000, width=0),
       IMPORT_V1, r"shape \(300000000, 0\): no values per vector"),
    _c("vectors-ids-0d-string", _ids("scalar.npz", np.array("new-0")), IMPORT_V1,
       "ids must be a 1-D array with one key per vector, got a single value"),
    _c("vectors-ids-2d", _ids("grid.npz", np.array([["new-0"], ["new-1"]])), IMPORT_V1,
       r"ids must be a 1-D array with one key per vector, got shape \(2, 1\)"),
    _c("vectors-ids-float", _ids("fids.npz", np.array([1.5, 2.5])), IMPORT_V1,
       "ids must be text or integers, got dtype float64"),
    _c("vectors-ids-bool", _ids("bids.npz", np.array([True, False])), IMPORT_V1,
       "ids must be text or integers, got dtype bool"),
    _c("vectors-ids-object-pickle", _ids("oids.npz", np.array(["new-0", "new-1"], dtype=object)), IMPORT_V1,
       "ids must be text or integers, got dtype object"),
    _c("vectors-ids-bytes-not-utf8", _ids("latin.npz", np.array([b"new-0", b"caf\xe9"])), IMPORT_V1,
       "id 2 is not UTF-8 text"),
    _c("vectors-ids-empty-string", _ids("blank.npz", np.array(["new-0", ""])), IMPORT_V1, "id 2: the key is empty"),
    _c("vectors-ids-only-spaces", _ids("spaces.npz", np.array(["new-0", "   "])), IMPORT_V1,
       "id 2: the key is empty"),
    _c("vectors-ids-only-a-bom", _ids("bomonly.npz", np.array(["\ufeff", "new-1"])), IMPORT_V1,
       "id 1: the key is empty"),
    _c("vectors-ids-newline", _ids("nl.npz", np.array(["new\n0", "new-1"])), IMPORT_V1,
       "id 1: the key 'new\\\\n0' holds the control character U\\+000A"),
    _c("vectors-ids-nul", _ids("nul.npz", np.array(["new\x000", "new-1"])), IMPORT_V1,
       r"control character U\+0000"),
    _c("vectors-ids-line-separator", _ids("ls.npz", np.array(["new\u20280", "new-1"])), IMPORT_V1,
       r"line separator U\+2028"),
    _c("vectors-ids-delete-char", _ids("del.npz", np.array(["new-0", "new\x7f1"])), IMPORT_V1,
       r"id 2: .*control character U\+007F"),
    _c("vectors-ids-nfc-look-alikes", _ids("nfd.npz", np.array([CAFE_NFC, CAFE_NFD])), IMPORT_V1,
       "id 2: .* differ only in Unicode normalisation"),
    _c("vectors-ids-bom-makes-a-duplicate", _ids("bomdup.npz", np.array(["\ufeffnew-0", "new-0"])), IMPORT_V1,
       r"duplicate ids, e\.g\. \['new-0'\]"),
    _c("vectors-ids-int-and-text-duplicate", _ids("intdup.npz", np.array([7, 7])), IMPORT_V1,
       r"duplicate ids, e\.g\. \['7'\]"),
    _c("vectors-ids-nfd-of-an-existing-key", _seeded(CAFE_NFC, _ids("exists.npz", np.array([CAFE_NFD, "new-1"]))),
       IMPORT_V1, f"1 key already exists in the workspace: {CAFE_NFC}"),
    _c("vectors-float64-beyond-float32", ib.huge_float64, IMPORT_V1,
       r"row 1 holds values too large for float32 \(1 rows\)$"),
    # a direction float32 cannot hold: stored as a zero vector, it was imported with a note
    _c("vectors-float64-below-float32", lambda e: mk.npz(e.inputs / "tiny64.npz", _spread(4, 1e-50, row=1)),
       IMPORT_V1, r"row 1 holds values too small for float32: every one rounds to zero \(1 rows\); scale the"),
    # zero queries among good documents: model add refused such a file, import stored it
    _c("vectors-zero-query-vectors", lambda e: mk.npz(e.inputs / "q0.npz", _spread(4), query_ids=np.array(
        ["q-0", "q-1", "q-2"]), query_vectors=np.zeros((3, 16), np.float32)), IMPORT_V1,
       r"q0\.npz: query_vectors: all 3 vectors are zero"),
    _c("vectors-empty-query-vectors", lambda e: mk.npz(e.inputs / "q-none.npz", _spread(4), query_ids=np.array(
        [], dtype=str), query_vectors=np.zeros((0, 16), np.float32)), IMPORT_V1,
       r"q-none\.npz: 'query_vectors' is empty: leave it out of a file without queries$"),
    _c("vectors-float16-inf", lambda e: mk.npz(e.inputs / "h.npz", np.array([[1, np.inf] + [0] * 14] * 2, np.float16)),
       IMPORT_V1, "row 0 holds NaN or inf"),
    _c("vectors-zero-width", lambda e: mk.npz(e.inputs / "w0.npz", np.ones((2, 0), np.float32)), IMPORT_V1,
       "no values per vector"),
    _c("vectors-npz-deflate-size-forged", lambda e: ib.forged_member_size(e, "ratio.npz", zipfile.ZIP_DEFLATED,
                                                                          0xFFFFFFF0),
       IMPORT_V1, "claims 4294967280 bytes from .* compressed bytes, more than deflate can expand"),
    _c("vectors-npz-stored-size-forged", lambda e: ib.forged_member_size(e, "stored.npz", zipfile.ZIP_STORED,
                                                                         10**9),
       IMPORT_V1, r"member ids\.npy claims 1000000000 bytes but stores \d+ \(forged sizes\)"),
    _c("vectors-npz-random-bytes", _text("noise.npz", np.random.default_rng(5).bytes(2048)), IMPORT_V1,
       "unreadable vector file"),
    _c("vectors-npz-ids-header-claims-huge", lambda e: ib.raw_npz(e.inputs / "hid.npz", {
        "ids.npy": ib.header_only((10**12,), "<U8"), "vectors.npy": ib.npy_bytes(TWO)}), IMPORT_V1,
       r"member ids\.npy claims 32000000000000 bytes of data"),
    # .npy vectors and their id list
    _c("vectors-npy-3d", lambda e: mk.npy_with_ids(e, "cube.npy", ib.npy_bytes(np.ones((2, 4, 4), np.float32))),
       NPY_IN, r"2-D matrix, got shape \(2, 4, 4\)"),
    _c("vectors-npy-bool", lambda e: mk.npy_with_ids(e, "b.npy", ib.npy_bytes(np.ones((2, 16), bool))), NPY_IN,
       "must be numeric, got dtype bool"),
    _c("vectors-npy-no-rows", lambda e: mk.npy_with_ids(e, "z.npy", ib.npy_bytes(np.ones((0, 16), np.float32))),
       NPY_IN, "holds no vectors"),
    _c("vectors-npy-bad-magic-version", lambda e: mk.npy_with_ids(e, "v9.npy", b"\x93NUMPY\x09\x00" + b"\0" * 80),
       NPY_IN, "unreadable vector file"),
    _c("ids-file-blank-line-in-the-middle", lambda e: ib.ids_file_case(e, "new-0\n\nnew-1\n", rows=3), IDS_LIST,
       "line 2 is empty; the id list needs one key a line"),
    _c("ids-file-not-utf8", lambda e: ib.ids_file_case(e, b"new-0\ncaf\xe9\n"), IDS_LIST, "not UTF-8 text"),
    _c("ids-file-missing", lambda e: (ib.ids_file_case(e, "x"), e.inputs / "absent-ids.txt")[1], IDS_LIST,
       "cannot read the id list"),
    _c("ids-file-is-a-folder", lambda e: (ib.ids_file_case(e, "x"), (e.inputs / "ids-dir").mkdir(),
                                          e.inputs / "ids-dir")[2], IDS_LIST, "cannot read the id list"),
    _c("ids-file-nfc-look-alikes", lambda e: ib.ids_file_case(e, f"{CAFE_NFC}\n{CAFE_NFD}\n"), IDS_LIST,
       "line 2: .* differ only in Unicode normalisation"),
    _c("ids-file-tab-in-a-key", lambda e: ib.ids_file_case(e, "new\t0\nnew-1\n"), IDS_LIST,
       r"line 1: the key 'new\\t0' holds the control character U\+0009"),
    _c("ids-file-bom-then-duplicate", lambda e: ib.ids_file_case(e, "\ufeffnew-0\nnew-0\n"), IDS_LIST,
       r"duplicate ids, e\.g\. \['new-0'\]"),
    _c("ids-file-utf16", lambda e: ib.ids_file_case(e, "new-0\nnew-1\n".encode("utf-16")), IDS_LIST,
       "not UTF-8 text"),
    _c("ids-file-too-few-lines", lambda e: ib.ids_file_case(e, "new-0\n", rows=3), IDS_LIST, "3 vectors but 1 ids"),
    # embeddings-only models get the same checks
    _c("ckpt-vectors-ids-2d", _ids("m2d.npz", np.array([["a"], ["b"]])), MODEL_ADD, "ids must be a 1-D array"),
    _c("ckpt-vectors-zero-byte-ids", lambda e: ib.zero_byte_ids(e, 300_000_000, 2), MODEL_ADD,
       "2 vectors but 300000000 ids"),
    _c("ckpt-vectors-beyond-float32", ib.huge_float64, MODEL_ADD, "values too large for float32"),
    _c("ckpt-vectors-ids-look-alikes", _ids("mnfd.npz", np.array([CAFE_NFD, CAFE_NFC])), MODEL_ADD,
       "differ only in Unicode normalisation"),
    # CSV
    _c("csv-bom-and-duplicate-keys", _text("bom.csv", "\ufeffkey,text\na,x\na,y\n"), IMPORT,
       "duplicate keys in the input: 'a' \\(each item needs a key of its own\\)"),
    _c("csv-control-char-in-key", _text("ctl.csv", "key,text\na\x01b,x\n"), IMPORT,
       r"line 2 \(record 1\): 'key': the key 'a\\x01b' holds the control character U\+0001"),
    _c("csv-control-char-in-label", _text("lab.csv", "key,text,label\na,x,ca\x07t\n"), IMPORT,
       r"line 2 \(record 1\): 'label': the label .* U\+0007"),
    _c("csv-nfc-look-alike-keys", _text("nfd.csv", f"key,text\n{CAFE_NFC},x\n{CAFE_NFD},y\n"), IMPORT,
       r"line 3 \(record 2\): 'key': .* differ only in Unicode normalisation"),
    _c("csv-nfd-of-an-existing-key", _seeded(CAFE_NFC, _text("nfd-again.csv", f"key,text\n{CAFE_NFD},y\n")), IMPORT,
       f"1 key already exists in the workspace: {CAFE_NFC}"),
    _c("csv-surplus-fields", _text("wide.csv", "key,text\na,x,extra,more\n"), IMPORT,
       r"line 2 \(record 1\): 2 more fields than the header has columns"),
    _c("csv-nul-byte-in-text", _text("nul.csv", "key,text\na,x\x00y\n"), IMPORT,
       r"line 2 \(record 1\): the 'text' field holds the control character U\+0000"),
    _c("csv-header-names-a-column-twice", _text("dupcol.csv", "key,text,text\na,x,y\n"), IMPORT,
       "line 1: the header names the column 'text' twice"),
    _c("csv-key-only-a-bom", _text("bomkey.csv", "key,text\n\ufeff,x\n"), IMPORT,
       r"line 2 \(record 1\): 'key': the key is empty"),
    _c("csv-utf16", _text("wide16.csv", "key,text\na,x\n".encode("utf-16")), IMPORT, "not UTF-8"),
    _c("tsv-no-text-column", _text("cols.tsv", "key\tbody\na\tx\n"), IMPORT, "no 'text' column"),
    # JSONL
    _c("jsonl-label-boolean", _text("lb.jsonl", '{"text": "x", "label": true}\n'), IMPORT,
       "line 1: 'label': a label must be text or an integer, got the boolean true", app="import"),
    _c("jsonl-label-object", _text("lo.jsonl", '{"text": "x", "label": {"a": 1}}\n'), IMPORT,
       "line 1: 'label': a label must be text or an integer, got an object"),
    _c("jsonl-label-list", _text("ll.jsonl", '{"text": "x", "label": [1, 2]}\n'), IMPORT, "got a list"),
    _c("jsonl-label-fraction", _text("lf.jsonl", '{"text": "x", "label": 2.5}\n'), IMPORT, "got the number 2.5"),
    _c("jsonl-label-nan", _text("ln.jsonl", '{"text": "x", "label": NaN}\n'), IMPORT, "got the number nan"),
    _c("jsonl-label-huge-float", _text("lh.jsonl", '{"text": "x", "label": 1e400}\n'), IMPORT, "got the number inf"),
    _c("jsonl-text-number", _text("tn.jsonl", '{"key": "a", "text": 42}\n'), IMPORT,
       "line 1: the 'text' field must be text, got int"),
    _c("jsonl-text-object", _text("to.jsonl", '{"key": "a", "text": {"en": "hi"}}\n'), IMPORT,
       "the 'text' field must be text, got dict"),
    _c("jsonl-key-boolean", _text("kb.jsonl", '{"key": false, "text": "x"}\n'), IMPORT,
       "line 1: 'key': a key must be text or an integer, got the boolean false"),
    _c("jsonl-key-object", _text("ko.jsonl", '{"key": {"id": 1}, "text": "x"}\n'), IMPORT, "got an object"),
    _c("jsonl-key-fraction", _text("kf.jsonl", '{"key": 1.5, "text": "x"}\n'), IMPORT, "got the number 1.5"),
    _c("jsonl-key-lone-surrogate", _text("ks.jsonl", '{"key": "a\\ud800", "text": "x"}\n'), IMPORT,
       r"lone surrogate U\+D800"),
    _c("jsonl-key-line-separator", _text("kls.jsonl", '{"key": "a\u2028b", "text": "x"}\n'), IMPORT,
       r"line 1: 'key': .* holds the line separator U\+2028"),
    _c("jsonl-text-lone-surrogate", _text("ts.jsonl", '{"key": "a", "text": "x\\udc00y"}\n'), IMPORT,
       r"line 1: the 'text' field holds the lone surrogate U\+DC00"),
    _c("jsonl-text-nul", _text("tnul.jsonl", '{"key": "a", "text": "x\\u0000y"}\n'), IMPORT,
       r"line 1: the 'text' field holds the control character U\+0000"),
    _c("jsonl-nfc-look-alike-keys", _text("nfd.jsonl", f'{{"key": "{CAFE_NFC}", "text": "x"}}\n'
                                                       f'{{"key": "{CAFE_NFD}", "text": "y"}}\n'), IMPORT,
       "line 2: 'key': .* differ only in Unicode normalisation"),
    _c("jsonl-int-and-text-key-duplicate", _text("kid.jsonl", '{"key": 3, "text": "x"}\n{"key": "3", "text": "y"}\n'),
       IMPORT, "duplicate keys in the input: '3' \\(each item needs a key of its own\\)"),
    _c("jsonl-nested-too-deeply", _text("deep.jsonl", '{"text": "x", "m": ' + "[" * 200_000 + "]" * 200_000 + "}\n"),
       IMPORT, "line 1: JSON nested too deeply"),
    _c("jsonl-raw-tab-inside-a-string", _text("tab.jsonl", '{"text": "a\tb"}\n'), IMPORT,
       "line 1: invalid JSON .*control character"),
    _c("jsonl-string-left-open", _text("open.jsonl", '{"key": "a", "text": "ok"}\n{"key": "b", "text": "left open\n'),
       IMPORT, r"line 2: invalid JSON \(Unterminated string starting at column 22\)"),
    _c("jsonl-string-left-open-crlf", _text("open.jsonl", '{"key": "a", "text": "ok"}\r\n{"key": "b", "text": "left open\r\n'),
       IMPORT, r"line 2: invalid JSON \(Unterminated string starting at column 22\)"),
    _c("jsonl-not-utf8", _text("latin.jsonl", b'{"text": "caf\xe9"}\n'), IMPORT, "not UTF-8"),
    _c("jsonl-blank-text", _text("bt.jsonl", '{"key": "a", "text": "   "}\n'), IMPORT,
       "line 1: missing or empty 'text'"),
    _c("jsonl-bom-then-duplicate-keys", _text("bomdup.jsonl", '\ufeff{"key": "a", "text": "x"}\n{"key": "a", "text": "y"}\n'),
       IMPORT, "duplicate keys in the input: 'a' \\(each item needs a key of its own\\)"),
    _c("jsonl-top-level-string", _text("str.jsonl", '"just text"\n'), IMPORT, "line 1: expected a JSON object"),
    # images
    _c("images-not-an-image", lambda e: ib.bad_image(e, "fake", "1.png", b"this is not a PNG at all"),
       _import("fake"), r"unreadable image \(unknown or damaged format\)", app="import"),
    _c("images-text-named-jpg", lambda e: ib.bad_image(e, "fakejpg", "1.jpg", "hello world\n" * 20),
       _import("fakejpg"), "unreadable image"),
    _c("images-garbage-bmp", lambda e: ib.bad_image(e, "fakebmp", "1.bmp", b"BM" + b"\xff" * 60),
       _import("fakebmp"), "unreadable image"),
    _c("images-truncated-png", ib.truncated_png, _import("cut-png"), "unreadable image"),
    _c("images-truncated-jpeg", ib.truncated_jpeg, _import("cut-jpg"), "unreadable image"),
    _c("images-decompression-bomb-png", lambda e: ib.bomb_png(ib.image_folder(e, "bomb") / "dog" / "b.png",
                                                             7000, 7000),
       _import("bomb"), r"image is 7000 high x 7000 wide \(49000000 pixels\), over the limit of 40000000", app="import"),
    _c("images-bomb-header-claims-10-gigapixels",
       lambda e: ib.bomb_png(ib.image_folder(e, "gbomb") / "dog" / "b.png", 100_000, 100_000, real_data=False),
       _import("gbomb"), r"100000 high x 100000 wide|too large to decode safely"),
    _c("images-pixel-limit-lowered", _env("EMBRIDGE_MAX_IMAGE_PIXELS", "10",
                                          lambda e: ib.image_folder(e, "small") / "cat" / "0.png"),
       _import("small"), r"image is 4 high x 4 wide \(16 pixels\), over the limit of 10"),
    _c("images-pixel-limit-not-a-number", _env("EMBRIDGE_MAX_IMAGE_PIXELS", "lots",
                                               lambda e: ib.image_folder(e, "small2"), "EMBRIDGE_MAX_IMAGE_PIXELS"),
       _import("small2"), "must be a whole number of pixels, got 'lots'"),
    _c("images-label-folder-links-to-the-root", ib.folder_links_to_root, _import("loop"),
       "links back to .* inside the imported folder; its images would be imported twice"),
    _c("images-nested-link-to-another-label", ib.nested_link_to_label, _import("nested-loop"),
       "links back to .*its images would be imported twice"),
    _c("images-npy-object-array", _npy_image("npyobj", lambda: ib.npy_bytes(np.ones((4, 4)).astype(object))),
       _import("npyobj"), "a .npy image must hold numbers, got dtype object"),
    _c("images-npy-4d", _npy_image("npy4d", lambda: ib.npy_bytes(np.ones((1, 2, 2, 2), np.float32))),
       _import("npy4d"), r"1-, 2- or 3-D, got shape \(1, 2, 2, 2\)"),
    _c("images-npy-header-claims-huge", _npy_image("npybig", lambda: ib.header_only((10**6, 10**6), "|u1")),
       _import("npybig"), "the header claims 1000000000000 bytes of data but the file holds 0"),
    _c("images-npy-empty", _npy_image("npyempty", lambda: ib.npy_bytes(np.ones((0, 4), np.float32))),
       _import("npyempty"), r"a \.npy image holds no values \(shape \(0, 4\)\)"),  # stored, refused at embed
    _c("images-npy-strings", _npy_image("npystr", lambda: ib.npy_bytes(np.array([["a", "b"]]))),
       _import("npystr"), "must hold numbers, got dtype <U1"),
    _c("images-npy-random-bytes", _npy_image("npyjunk", lambda: np.random.default_rng(6).bytes(256)),
       _import("npyjunk"), "not a readable .npy image"),
    _c("images-control-char-in-file-name", lambda e: ib.odd_named_image(e, "ctlname", "cat", "a\x01b.png"),
       _import("ctlname"), r"holds the control character U\+0001"),
    _c("images-newline-in-label-folder", lambda e: ib.odd_named_image(e, "nlname", "ca\nt", "x.png").rsplit("/", 1)[0],
       _import("nlname"), r"folder name: the label 'ca\\nt' holds the control character U\+000A"),
    _c("images-nfc-look-alike-names", ib.look_alike_images, _import("lookalike"),
       "differ only in Unicode normalisation"),
    _c("images-only-hidden-files", ib.only_hidden_images, _import("hidden"), "no image files found"),
    # bundle apply: inf (float64 rows beyond float32 are scaled by the layer's input normalisation: see
    # test_bundle_apply)
    _c("bundle-apply-inf-vectors", lambda e: mk.apply_input(e, "inf.npy", np.full((3, 32), np.inf, np.float32)),
       APPLY, "row 0 holds NaN or inf values"),
    _c("bundle-apply-text-file-named-npy", _text("text.npy", "0.1,0.2\n0.3,0.4\n"), APPLY,
       r"vectors file is not a \.npy matrix \(it does not begin with the \.npy signature\)"),
    _c("bundle-apply-empty-file", _text("empty.npy", b""), APPLY, r"vectors file is not a \.npy matrix \(it is empty\)"),
]


def option(args: tuple[str, ...], flag: str) -> str | None:
    """The value given to ``flag`` in a case's arguments, if any."""
    return args[args.index(flag) + 1] if flag in args else None


@pytest.fixture(scope="session")
def corpus_base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A workspace with items, three embeddings-only models, runs and adapters, and a good bundle."""
    from bundle_fixtures import build_upgrade_workspace

    from embridge.core.bundle import export_bundle
    from embridge.core.store import Workspace

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
