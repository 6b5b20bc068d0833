"""The bundle's manifest and its integrity scheme.

``manifest.json`` describes the upgrade and lists the sha256 and size of every other file under
``files``. Its own hash cannot live inside it, so a top-level ``CHECKSUMS`` file lists the sha256
of every file of the bundle *including* ``manifest.json``, one ``<sha256>  <name>`` line each (the
format of ``sha256sum``, so ``sha256sum -c CHECKSUMS`` also checks a bundle folder without
Embridge). Verification requires both files, requires them to agree with each other, and requires
the set of files present to be exactly the set listed: so a changed byte anywhere, a missing or an
extra file, and an edited manifest are all reported, naming the file. Like any unsigned checksum,
this detects corruption and careless edits, not a forger who rewrites both lists.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from embridge.core.bundle.archive import BundleSource
from embridge.core.errors import BundleError
from embridge.core.progress import ProgressFn, StopFn, check_stop, no_progress

# 2: adds the torch-free adapter (adapter.safetensors, adapter.onnx for non-linear kinds) and the
# manifest's "portable" section; format-1 bundles still verify and apply with torch.
FORMAT_VERSION = 2
PORTABLE_FILE = "adapter.safetensors"
ADAPTER_FILE = "adapter.pt"
MAX_DIM = 1 << 20
MANIFEST = "manifest.json"
CHECKSUMS = "CHECKSUMS"
REPORT_JSON = "report.json"
RESERVED = (MANIFEST, CHECKSUMS)
REQUIRED_KEYS = ("format_version", "created", "embridge_version", "adapter", "files", "probes")
_LINE = re.compile(r"^([0-9a-f]{64})  (\S(?:.*\S)?)$")


def checksums_text(hashes: Mapping[str, str]) -> str:
    """``CHECKSUMS`` content: one ``sha256sum`` line per file, sorted by name."""
    return "".join(f"{hashes[name]}  {name}\n" for name in sorted(hashes))


def parse_checksums(src: BundleSource) -> dict[str, str]:
    if not src.has(CHECKSUMS):
        raise BundleError(f"{src.path}: {CHECKSUMS} is missing, so the manifest cannot be checked")
    out: dict[str, str] = {}
    try:
        text = src.read_bytes(CHECKSUMS).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BundleError(f"{src.path}: {CHECKSUMS} is not UTF-8 text") from exc
    for number, line in enumerate(text.splitlines(), start=1):
        match = _LINE.match(line)
        if not match or match.group(2) in out:
            raise BundleError(f"{src.path}: {CHECKSUMS} line {number} is malformed or repeated: {line[:80]!r}")
        out[match.group(2)] = match.group(1)
    return out


def parse_manifest(src: BundleSource) -> dict[str, Any]:
    """The manifest as a dict; its format version must be one this Embridge reads."""
    if not src.has(MANIFEST):
        raise BundleError(f"{src.path}: {MANIFEST} is missing; this is not an Embridge bundle")
    try:
        manifest = json.loads(src.read_bytes(MANIFEST).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{src.path}: {MANIFEST} is not valid JSON ({exc})") from exc
    except RecursionError:
        raise BundleError(f"{src.path}: {MANIFEST} is nested too deeply to be a bundle manifest") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{src.path}: {MANIFEST} must hold a JSON object")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise BundleError(f"{src.path}: {MANIFEST} has no integer format_version")
    if version > FORMAT_VERSION or version < 1:
        raise BundleError(f"{src.path}: bundle format {version} is not supported by this Embridge "
                          f"(it reads format 1 to {FORMAT_VERSION}); upgrade Embridge")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise BundleError(f"{src.path}: {MANIFEST} lacks {', '.join(missing)}")
    if not isinstance(manifest["files"], dict):
        raise BundleError(f"{src.path}: {MANIFEST} 'files' must map names to hashes")
    check_fields(src.path, manifest)
    return manifest


def check_fields(where: object, m: dict[str, Any]) -> None:
    """Refuse a manifest whose fields have the wrong types or values, naming the field."""
    def fail(field: str, problem: str) -> None:
        raise BundleError(f"{where}: {MANIFEST} field '{field}' {problem}")

    def text(value: Any) -> bool:
        return isinstance(value, str) and 0 < len(value) <= 500

    def dim(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_DIM

    adapter = m["adapter"]
    if not isinstance(adapter, dict) or not adapter:
        fail("adapter", "must be a non-empty object")
    for key in ("kind", "direction"):
        if not text(adapter.get(key)):
            fail(f"adapter.{key}", "must be a non-empty string")
    for key in ("in_dim", "out_dim"):
        if not dim(adapter.get(key)):
            fail(f"adapter.{key}", f"must be an integer from 1 to {MAX_DIM}, got {str(adapter.get(key))[:40]!r}")
    inputs = adapter.get("inputs")
    if not (isinstance(inputs, list) and inputs in (["new"], ["old"], ["new", "old"])):
        fail("adapter.inputs", "must be [\"new\"], [\"old\"] or [\"new\", \"old\"]")
    if adapter.get("file") != ADAPTER_FILE:
        fail("adapter.file", f"must be '{ADAPTER_FILE}' (a bundle holds its adapter there), "
             f"got {str(adapter.get('file'))[:80]!r}")
    if ADAPTER_FILE not in m["files"]:
        fail("files", f"does not list {ADAPTER_FILE}")
    for name, entry in m["files"].items():
        size = entry.get("bytes") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or (size is not None and not (isinstance(size, int) and size >= 0)):
            fail(f"files.{str(name)[:80]}", "must be an object with a sha256 and a byte count")
    for key in ("created", "embridge_version"):
        if not text(m.get(key)):
            fail(key, "must be a non-empty string")
    norm = m.get("normalisation")
    if not (isinstance(norm, dict) and text(norm.get("input")) and text(norm.get("output"))):
        fail("normalisation", "must be an object with 'input' and 'output' strings")
    for key in ("probes", "models", "metrics", "report"):
        if key in m and not isinstance(m[key], dict):
            fail(key, "must be an object")
    for role in ("old", "new"):
        entry = (m.get("models") or {}).get(role)
        if entry is not None and not isinstance(entry, dict):
            fail(f"models.{role}", "must be an object")
    chain = m.get("chain", [])
    steps_ok = isinstance(chain, list) and all(
        isinstance(step, dict) and all(step.get(k) is not None and text(str(step[k]))
                                       for k in ("run_id", "kind", "direction"))
        for step in chain)
    if not steps_ok:
        fail("chain", "must be a list of steps (objects with run_id, kind and direction)")
    if m["format_version"] >= 2:
        entry = m.get("portable")
        if not (isinstance(entry, dict) and entry.get("file") == PORTABLE_FILE and PORTABLE_FILE in m["files"]
                and entry.get("runtime") in ("numpy", "onnx")):
            fail("portable", f"must be an object naming '{PORTABLE_FILE}' (listed under files) and a runtime "
                 "'numpy' or 'onnx'")
        if entry["runtime"] == "onnx" and entry.get("onnx") not in m["files"]:
            fail("portable.onnx", "must name the ONNX file listed under files")
    gallery = m.get("gallery_transformed")
    if gallery is not None and not (isinstance(gallery, dict) and isinstance(gallery.get("count"), int)):
        fail("gallery_transformed", "must be null or an object with an integer count")
    values = (m.get("metrics") or {}).get("values", {})
    if not isinstance(values, dict):
        fail("metrics.values", "must be an object")


def listed_hashes(src: BundleSource, manifest: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, entry in manifest["files"].items():
        sha = entry.get("sha256") if isinstance(entry, dict) else None
        if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise BundleError(f"{src.path}: {MANIFEST} has no valid sha256 for {name}")
        out[name] = sha
    return out


def check_integrity(src: BundleSource, on_progress: ProgressFn | None = None,
                    should_stop: StopFn | None = None) -> dict[str, Any]:
    """Check CHECKSUMS, the manifest and every file; returns the manifest or raises BundleError."""
    report = on_progress or no_progress
    sums = parse_checksums(src)
    if MANIFEST not in sums:
        raise BundleError(f"{src.path}: {CHECKSUMS} does not list {MANIFEST}")
    if src.has(MANIFEST) and src.sha256(MANIFEST) != sums[MANIFEST]:
        raise BundleError(f"{src.path}: {MANIFEST} was edited after export (its sha256 differs from {CHECKSUMS})")
    manifest = parse_manifest(src)
    listed = listed_hashes(src, manifest)
    for name in sorted(set(listed) | set(sums)):
        if name == MANIFEST:
            continue
        if name in RESERVED or listed.get(name) != sums.get(name):
            raise BundleError(f"{src.path}: {name}: {MANIFEST} and {CHECKSUMS} disagree about this file")
    present = set(src.names()) - set(RESERVED)
    for name in sorted(set(listed) - present):
        raise BundleError(f"{src.path}: {name} is listed in the manifest but missing from the bundle")
    for name in sorted(present - set(listed)):
        raise BundleError(f"{src.path}: {name} is not listed in the manifest (extra file added after export)")
    total = sum(src.size(n) for n in listed)
    done = 0
    for name in sorted(listed):
        check_stop(should_stop)
        entry = manifest["files"][name]
        if isinstance(entry.get("bytes"), int) and entry["bytes"] != src.size(name):
            raise BundleError(f"{src.path}: {name} was changed after export ({src.size(name)} bytes, "
                              f"the manifest says {entry['bytes']})")
        if src.sha256(name) != listed[name]:
            raise BundleError(f"{src.path}: {name} was changed after export (sha256 mismatch)")
        done += src.size(name)
        report(done, total, {"stage": "hashing", "file": name})
    check_report(src, manifest)
    return manifest


def check_report(src: BundleSource, manifest: dict[str, Any]) -> None:
    """The included ``report.json`` must have measured the bundle's own layer.

    Compared where both sides record it: the adapter's sha256 (each step of ``chain``), the run
    ids (``adapter.run_ids``, ``report.run_id``) and the report id. A bundle whose report measured
    another layer carries numbers its layer never had.
    """
    if REPORT_JSON not in manifest["files"]:
        return
    try:
        report = json.loads(src.read_bytes(REPORT_JSON).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BundleError(f"{src.path}: {REPORT_JSON} is not a readable JSON report") from None
    if not isinstance(report, dict):
        raise BundleError(f"{src.path}: {REPORT_JSON} must hold a JSON object")
    measured = report.get("adapter") if isinstance(report.get("adapter"), dict) else {}
    run = report.get("run") if isinstance(report.get("run"), dict) else {}
    run_id, sha = run.get("id"), measured.get("sha256")
    steps = [s for s in manifest.get("chain", []) if isinstance(s, dict)]
    shas = {s.get("adapter_sha256") for s in steps} - {None}
    runs = manifest["adapter"].get("run_ids") or [s.get("run_id") for s in steps]
    runs = runs if isinstance(runs, list) else []
    entry = manifest.get("report") or {}

    def mislabelled(what: str) -> BundleError:
        exported = ", ".join(str(r) for r in runs) or "?"
        return BundleError(f"{src.path}: {REPORT_JSON} was measured for {what}, not for this bundle's layer "
                           f"(run {exported}); its numbers do not describe this bundle")

    if isinstance(sha, str) and shas and sha not in shas:
        raise mislabelled(f"{f'run {run_id}' if run_id is not None else 'another run'} (adapter sha256 {sha[:12]})")
    for claimed in (run_id, entry.get("run_id")):
        if claimed is not None and runs and claimed not in runs:
            raise mislabelled(f"run {claimed}")
    if entry.get("run_id") is not None and run_id is not None and entry["run_id"] != run_id:
        raise BundleError(f"{src.path}: {REPORT_JSON} measured run {run_id}, but {MANIFEST} says its report "
                          f"measured run {entry['run_id']}")
    if entry.get("id") is not None and report.get("report_id") is not None and entry["id"] != report["report_id"]:
        raise BundleError(f"{src.path}: {REPORT_JSON} is report {report['report_id']}, but {MANIFEST} says "
                          f"report {entry['id']}")
