"""Export a workspace's adapter (or chain of adapters) as a bundle folder or ``.zip``.

The bundle is assembled in a temp folder beside the destination (a zip is then packed into a temp
file), verified there, and only then moved into place under a name claimed atomically, so a crash
or a cancel never leaves a half bundle under the final name, and a file that appears there while
the export runs is never replaced. The export is recorded as a workspace run and the bundle is
registered with its sha256 (of the zip file, or the folder tree); an export stopped between the
move and that record takes the bundle back.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from embridge.core import __version__
from embridge.core.adapters import adapter_payload
from embridge.core.bundle import contents
from embridge.core.bundle.deploy import compose_adapters, deploy_module, inputs_of, script, serving_method
from embridge.core.bundle.manifest import (
    CHECKSUMS,
    FORMAT_VERSION,
    INPUT_NORMALISATIONS,
    MANIFEST,
    OUTPUT_NORMALISATIONS,
    REPORT_JSON,
    STATE_FILE,
    checksums_text,
)
from embridge.core.bundle.matrix_out import MatrixFile
from embridge.core.bundle.measured import metrics_for
from embridge.core.bundle.overwrite import bundle_above, replaceable_bundle
from embridge.core.bundle.portable_export import write_portable
from embridge.core.bundle.readme import readme_text
from embridge.core.bundle.runtime import (
    ADAPTER_FILE,
    PROBE_ATOL,
    PROBE_INPUTS,
    PROBE_OLD,
    PROBE_OUTPUTS,
    PROBE_RTOL,
    run_module,
    verify_bundle,
)
from embridge.core.data_state import report_stale_note, stale_note
from embridge.core.errors import BundleError, InputError, IntegrityError
from embridge.core.jobs import recorded_run
from embridge.core.l2 import prepare_input
from embridge.core.paths import absolute, check_folder_target, check_output, remove_no_follow
from embridge.core.progress import ProgressFn, StopFn, check_stop, no_progress
from embridge.core.stop_signals import hold as hold_stop_signals
from embridge.core.store import Workspace
from embridge.core.store.file_lock import exclusive_lock
from embridge.core.store.files import (
    disk_error,
    exchange,
    publish_new,
    sha256_file,
    sha256_tree,
    temp_path_for,
    torch_bytes,
)
from embridge.core.store.rows import now_iso
from embridge.core.store.vector_matrix import release_pages

GALLERY_DIR = "gallery_transformed"
GALLERY_CHUNK = 16_384
# members of float tensors (weights, probes, matrices) deflate by a few per cent at most and deflating
# them was most of an export's time: in a .zip bundle those above this size are stored as they are
STORE_TENSOR_BYTES = 1 << 16
TENSOR_SUFFIXES = frozenset({".npy", ".pt", ".safetensors", ".onnx"})


OTHER_ARCHIVES = (".gz", ".tgz", ".tar", ".bz2", ".xz", ".zst", ".7z", ".rar")  # names a folder must not take


def export_bundle(ws: Workspace, out: str | Path, run_ids: list[int] | None = None, *,
                  report_id: int | None = None, gallery: bool | None = None, probes: int = 64, seed: int = 0,
                  overwrite: bool = False, on_progress: ProgressFn | None = None,
                  should_stop: StopFn | None = None) -> dict[str, Any]:
    """Write a bundle of ``run_ids``' adapters (a chain when several) to ``out`` (folder or .zip).

    ``gallery``: include ``gallery_transformed/`` (default: yes for old->new layers that need no
    side information, which the workspace does not store).
    ``report_id``: the report to include (default: the latest one of a single run).
    """
    out = check_output(out, workspace=ws.root)
    if out.suffix.lower() in OTHER_ARCHIVES:
        raise InputError("--out", f"{out}: ends in {out.suffix}, an archive a bundle is never written as; a bundle is "
                         "a folder, or a name ending in .zip")
    holder = bundle_above(out)
    if holder is not None:
        raise InputError("--out", f"{out}: is inside the bundle {holder}; a file written there would make it fail "
                         "verification: choose a path outside it")
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise InputError("--out", f"{out}: already exists; choose another name, or allow overwriting "
                             "(the command line's --overwrite) to replace an earlier bundle there")
        replaceable_bundle(out)
    check_folder_target(absolute(out), "--out", within=True)  # a folder that takes no file: refused before any work
    steps = contents.resolve_steps(ws, run_ids)
    _check_gallery_wanted(steps[0], gallery)
    report = contents.chosen_report(ws, steps, report_id)
    config = {"runs": [s.run["id"] for s in steps], "out": str(out), "gallery": gallery, "probes": probes}
    with _sole_export(out), \
            recorded_run(ws, "export", steps[0].adapter.kind if len(steps) == 1 else "chain", config) as record:
        staging = temp_path_for(out if out.suffix.lower() != ".zip" else out.with_suffix(""))
        packed = temp_path_for(out) if out.suffix.lower() == ".zip" else staging
        published, old = False, None
        try:
            try:
                staging.mkdir(parents=True)
                manifest = _fill(ws, staging, steps, report, gallery, probes, seed, on_progress, should_stop)
                if packed != staging:
                    _zip(staging, packed)
                verify_bundle(packed)  # checked before it takes the name: what appears at --out is whole
                digest = sha256_file(packed) if packed.is_file() else sha256_tree(packed)
                check_stop(should_stop)
                # from taking the name to the record, Ctrl-C and SIGTERM wait: one landing inside the swap lost
                # track of where the earlier bundle lay, and cleaning up deleted it (raised once recorded)
                hold_stop_signals()
                old = _publish(packed, out, overwrite)
                published = True
            except OSError as exc:  # a full disk or a folder we may not write: one line, nothing left
                raise disk_error(exc, out, "write the bundle") from exc
            with ws.transaction(result=True):  # the bundle's row and its run's completion commit together
                row = ws.add_bundle(steps[0].row["id"], manifest["report"]["id"], out.resolve(), digest, manifest)
                record["metrics"] = {"bundle_id": row["id"], "path": str(out.resolve()), "sha256": digest}
                record.complete()
            _settle(out, packed, old, recorded=True)
        except BaseException:
            if published:  # stopped before it was recorded: the earlier bundle back, none the workspace lacks
                _settle(out, packed, old, recorded=False)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            if packed != staging:
                packed.unlink(missing_ok=True)
    size = out.stat().st_size if out.is_file() else sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    runs = [s.run["id"] for s in steps]
    return {"bundle_id": row["id"], "run_id": runs[0] if len(runs) == 1 else None, "run_ids": runs,
            "stale": manifest.get("measured_before_changes"), "export_run_id": record["run_id"],
            "path": str(out.resolve()),
            "format": "zip" if out.is_file() else "folder", "sha256": digest, "bytes": size,
            "files": sorted(manifest["files"]) + [CHECKSUMS, MANIFEST], "manifest": manifest}


@contextmanager
def _sole_export(out: Path) -> Iterator[None]:
    """Hold ``<out>.lock`` for the export, as ``bundle apply`` does for its output: two exports to one
    path would each swap their bundle in and put back what they replaced if stopped, leaving the
    workspace recording a bundle that another export's files had replaced."""
    def busy() -> Exception:
        return BundleError(f"{out}: another 'bundle export' is writing this bundle; wait for it to finish "
                           "or choose another output path")

    with exclusive_lock(out.with_name(out.name + ".lock"), busy):
        yield


def _maps_stored_gallery(adapter: Any) -> bool:
    """A forward layer that takes the stored old vectors alone: the only kind a transformed gallery comes from."""
    return adapter.direction == "forward" and not getattr(adapter, "side_dim", 0)


def _check_gallery_wanted(first: contents.Step, gallery: bool | None) -> None:
    """``gallery=True`` (--gallery) needs a layer that maps the stored gallery: refused before the export is
    recorded as a run."""
    adapter = first.adapter
    if gallery and not _maps_stored_gallery(adapter):
        why = "takes side information the workspace does not store" if adapter.direction == "forward" else \
            f"maps new queries into the old space ({adapter.direction})"
        raise InputError("--gallery", f"a transformed gallery needs an old->new (forward) layer without side "
                         f"information; run {first.run['id']}'s {adapter.kind} layer {why}")


def _stored_layer_bytes(ws: Workspace, row: dict[str, Any]) -> bytes:
    """The bytes of a layer's file as the workspace stored it, refused if they changed since."""
    import hashlib

    path = ws.adapter_path(int(row["id"]), verify=False)
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != row["sha256"]:
        raise IntegrityError(f"{path}: adapter file is missing or changed since it was stored")
    return data


def _fill(ws: Workspace, root: Path, steps: list[contents.Step], report: dict | None, gallery: bool | None,
          probe_count: int, seed: int, on_progress: ProgressFn | None, should_stop: StopFn | None) -> dict:
    """Write every file of the bundle into ``root``; returns the manifest (also written)."""
    first, last = steps[0], steps[-1]
    module = deploy_module(first.adapter)
    for step in steps[1:]:
        module = compose_adapters(module, step.adapter, normalise_between=step.input_normalised)
    (root / ADAPTER_FILE).write_bytes(torch_bytes(script(module), jit=True))
    if len(steps) == 1:  # the workspace's own file, whose sha256 the manifest records and verify compares
        (root / STATE_FILE).write_bytes(_stored_layer_bytes(ws, first.row))
    else:
        (root / STATE_FILE).write_bytes(torch_bytes({
            "format": 1, "kind": "chain", "steps": [adapter_payload(s.adapter) for s in steps],
            "normalise_between": [s.input_normalised for s in steps[1:]]}))

    reports = {s.run["id"]: contents.report_for(ws, s) for s in steps}
    report_entry: dict[str, Any] = {"id": None, "files": [], "note": "no report for this run"}
    if report is not None:
        files = contents.report_files(ws, report)
        for name, path in files.items():
            shutil.copyfile(path, root / name)
        report_entry = {"id": report["id"], "files": sorted(files), "run_id": report.get("run_id"),
                        "adapter_id": report.get("adapter_id")}
        renamed = contents.renamed_models(files.get(REPORT_JSON), first.row if len(steps) == 1 else None)
        if renamed:
            report_entry["models_renamed"] = renamed

    x, old, source = contents.probe_vectors(ws, first, probe_count, seed)
    (root / "probes").mkdir()
    np.save(root / PROBE_INPUTS, x)
    if old is not None:
        np.save(root / PROBE_OLD, old)
    prepared = prepare_input(x, first.input_normalised, PROBE_INPUTS)  # the step apply and verify take
    expected = run_module(module, prepared, old)
    np.save(root / PROBE_OUTPUTS, expected)

    forward = first.adapter.direction == "forward"
    gallery_entry = None
    if _maps_stored_gallery(first.adapter) if gallery is None else gallery:
        gallery_entry = _write_gallery(ws, root, module, first, last, on_progress, should_stop)

    kind = first.adapter.kind if len(steps) == 1 else "chain"
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION, "created": now_iso(), "embridge_version": __version__,
        "adapter": {"kind": kind, "direction": first.adapter.direction, "in_dim": int(module.in_dim),
                    "out_dim": int(module.out_dim), "inputs": inputs_of(first.adapter),
                    "file": ADAPTER_FILE, "state_file": STATE_FILE,
                    "run_ids": [s.run["id"] for s in steps], "adapter_ids": [s.row["id"] for s in steps],
                    "method": serving_method(first.adapter) if len(steps) == 1 else {"kind": "chain", "encoders": 1}},
        "models": {"new": contents.model_entry(ws, first.row["new_model"] if not forward else last.row["new_model"]),
                   "old": contents.model_entry(ws, last.row["old_model"] if not forward else first.row["old_model"]),
                   "intermediate": [contents.model_entry(ws, s.target_model) for s in steps[:-1]]},
        "chain": [s.describe(reports[s.run["id"]]["id"] if reports[s.run["id"]] else None) for s in steps],
        "normalisation": {"input": INPUT_NORMALISATIONS[0] if first.input_normalised else INPUT_NORMALISATIONS[1],
                          "output": OUTPUT_NORMALISATIONS[0],
                          "similarity": "cosine (inner product of L2-normalised vectors)"},
        "metrics": metrics_for(ws, [s.run for s in steps], report), "report": report_entry,
        "probes": {"inputs": PROBE_INPUTS, "outputs": PROBE_OUTPUTS, "old_inputs": PROBE_OLD if old is not None else None,
                   "count": int(len(x)), "source": source, "rtol": PROBE_RTOL, "atol": PROBE_ATOL,
                   "inputs_are": "raw: normalisation.input is applied before the layer, as bundle apply does"},
        "gallery_transformed": gallery_entry, "files": {},
    }
    stale = report_stale_note(ws, int(report["id"])) if report is not None else \
        next(filter(None, (stale_note(ws, s.run) for s in steps)), None)
    if stale:  # the deploying side reads it too: README, bundle inspect
        manifest["measured_before_changes"] = stale
    manifest["portable"] = write_portable(root, steps, module, manifest["adapter"], manifest["normalisation"]["input"],
                                          prepared, old, expected)
    (root / "README.md").write_text(readme_text(manifest), encoding="utf-8")
    manifest["files"] = {p.relative_to(root).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                         for p in sorted(root.rglob("*")) if p.is_file()}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    sums = {name: entry["sha256"] for name, entry in manifest["files"].items()}
    sums[MANIFEST] = sha256_file(root / MANIFEST)
    (root / CHECKSUMS).write_text(checksums_text(sums), encoding="utf-8")
    return manifest


def _write_gallery(ws: Workspace, root: Path, module: Any, first: contents.Step, last: contents.Step,
                   on_progress: ProgressFn | None, should_stop: StopFn | None) -> dict[str, Any]:
    """The workspace gallery's old vectors transformed, in chunks, with their ids and keys."""
    report = on_progress or no_progress
    model = first.row["old_model"]
    ids = ws.gallery_ids(model)
    if len(ids) == 0:
        raise BundleError(f"{ws.root}: model '{model}' has no stored gallery vectors to transform")
    folder = root / GALLERY_DIR
    folder.mkdir()
    sets = ws.vector_sets(model)
    whole = None  # the one vector set holding exactly the gallery, in order: read by slices
    if len(sets) == 1 and sets[0]["count"] == len(ids):
        set_ids, matrix_in = ws.open_vector_set(sets[0]["id"])
        whole = matrix_in if np.array_equal(set_ids, ids) else None
    # space reserved up front: a full disk is an error here, never a crash in a mapped write
    with MatrixFile.create(folder / "vectors.npy", len(ids), int(module.out_dim)) as matrix:
        for start in range(0, len(ids), GALLERY_CHUNK):
            check_stop(should_stop)
            chunk = (np.array(whole[start:start + GALLERY_CHUNK], dtype=np.float32) if whole is not None
                     else ws.vectors_for(model, ids[start:start + GALLERY_CHUNK]))
            if whole is not None:
                release_pages(whole, start, start + len(chunk))  # read once: not kept resident
            matrix.write(start, run_module(module, prepare_input(chunk, first.input_normalised)))
            report(start + len(chunk), len(ids), {"stage": "transforming the gallery"})
        matrix.flush()
    np.save(folder / "ids.npy", ids)
    np.save(folder / "keys.npy", contents.item_keys(ws, ids))
    return {"vectors": f"{GALLERY_DIR}/vectors.npy", "ids": f"{GALLERY_DIR}/ids.npy",
            "keys": f"{GALLERY_DIR}/keys.npy", "count": int(len(ids)), "from_model": model,
            "to_model": last.row["new_model"], "normalised": False}


def _zip(staging: Path, packed: Path) -> None:
    """The finished folder as a zip at ``packed`` (large tensors stored, the rest deflated)."""
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(staging.rglob("*")):
            if path.is_file():
                stored = path.suffix in TENSOR_SUFFIXES and path.stat().st_size > STORE_TENSOR_BYTES
                zf.write(path, path.relative_to(staging).as_posix(),
                         compress_type=zipfile.ZIP_STORED if stored else None)


def _publish(packed: Path, out: Path, overwrite: bool) -> Path | None:
    """Move the finished bundle to ``out``; where the bundle it replaced now lies, or None.

    Only an ``overwrite`` replaces an earlier bundle there, and anything that appeared at ``out`` while
    this export ran is never replaced. The earlier bundle is kept until the workspace has recorded the
    new one (:func:`_settle`), and ``out`` holds one whole bundle at every moment where the system
    swaps paths in one step (a kill between moving a folder away and the new one in left it empty).
    """
    if not (out.exists() or out.is_symlink()):
        try:
            publish_new(packed, out)
        except FileExistsError:
            raise BundleError(f"{out}: appeared while the bundle was being written; nothing was replaced") from None
        return None
    if not overwrite:
        raise BundleError(f"{out}: appeared while the bundle was being written; nothing was replaced")
    replaceable_bundle(out)  # again: files may have been added to it while the export ran
    if packed.is_dir() == out.is_dir() and exchange(packed, out):
        return packed  # the earlier bundle now lies where the new one was staged
    old = temp_path_for(out)
    os.replace(out, old)
    try:
        publish_new(packed, out)
    except BaseException:
        os.replace(old, out)
        raise
    return old


def _settle(out: Path, packed: Path, old: Path | None, recorded: bool) -> None:
    """After the workspace recorded the new bundle (``recorded``): drop the earlier one. Otherwise put
    the earlier bundle back at ``out`` (or remove the new one when there was none)."""
    if recorded:  # best effort: the new bundle is in place and recorded whatever happens to the old copy
        if old is not None and old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        elif old is not None:
            old.unlink(missing_ok=True)
        return
    if old is None:
        remove_no_follow(out)
    elif old == packed:  # swapped: swap back, and the new bundle goes with the staging folder
        exchange(packed, out)
    else:
        remove_no_follow(out)
        os.replace(old, out)
