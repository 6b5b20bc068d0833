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
from embridge.core.bundle.manifest_fields import (
    ADAPTER_FILE,
    INPUT_NORMALISATIONS,
    MANIFEST,
    MAX_DIM,
    ONNX_FILE,
    OUTPUT_NORMALISATIONS,
    PORTABLE_FILE,
    STATE_FILE,
    check_fields,
)
from embridge.core.errors import BundleError
from embridge.core.progress import ProgressFn, StopFn, check_stop, no_progress

# 2: adds the torch-free adapter (adapter.safetensors, adapter.onnx for non-linear kinds) and the
# manifest's "portable" section; format-1 bundles still verify and apply with torch.
FORMAT_VERSION = 2
CHECKSUMS = "CHECKSUMS"
REPORT_JSON = "report.json"
RESERVED = (MANIFEST, CHECKSUMS)
REQUIRED_KEYS = ("format_version", "created", "embridge_version", "adapter", "files", "probes")
__all__ = ["ADAPTER_FILE", "CHECKSUMS", "FORMAT_VERSION", "INPUT_NORMALISATIONS", "MANIFEST", "MAX_DIM", "ONNX_FILE",
           "OUTPUT_NORMALISATIONS", "PORTABLE_FILE", "REPORT_JSON", "STATE_FILE", "check_fields", "check_integrity",
           "checksums_text", "parse_checksums", "parse_manifest"]
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
        raise BundleError(f"{src.path}: {MANIFEST} field '{missing[0]}' is missing"
                          + (f" (and {', '.join(missing[1:])})" if len(missing) > 1 else ""))
    if not isinstance(manifest["files"], dict):
        raise BundleError(f"{src.path}: {MANIFEST} 'files' must map names to hashes")
    check_fields(src.path, manifest)
    return manifest


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
    check_state_identity(src, manifest, listed)
    return manifest


def check_state_identity(src: BundleSource, manifest: dict[str, Any], listed: dict[str, str]) -> None:
    """A one-layer bundle's checkpoint must be the layer its manifest (and report) describe: export copies the
    workspace's file, whose sha256 the manifest records. Another run's layer, with every file's hash rewritten,
    reproduced its own probes and passed, under the first layer's run, metrics and report."""
    steps = [s for s in manifest.get("chain", []) if isinstance(s, dict)]
    recorded = steps[0].get("adapter_sha256") if len(steps) == 1 else None
    if isinstance(recorded, str) and STATE_FILE in listed and listed[STATE_FILE] != recorded:
        raise BundleError(f"{src.path}: {STATE_FILE} is not the layer the manifest describes (its sha256 "
                          f"{listed[STATE_FILE][:12]}, run {steps[0].get('run_id')}'s layer {recorded[:12]}): "
                          "the layer was swapped after export")


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
    if run_id is not None and runs and run_id not in runs:
        raise mislabelled(f"run {run_id}")
    if entry.get("run_id") is not None and runs and entry["run_id"] not in runs:
        raise BundleError(f"{src.path}: {MANIFEST} field 'report.run_id' says its report measured run "
                          f"{entry['run_id']}, not this bundle's layer (run {', '.join(str(r) for r in runs)})")
    if entry.get("run_id") is not None and run_id is not None and entry["run_id"] != run_id:
        raise BundleError(f"{src.path}: {REPORT_JSON} measured run {run_id}, but {MANIFEST} says its report "
                          f"measured run {entry['run_id']}")
    if entry.get("id") is not None and report.get("report_id") is not None and entry["id"] != report["report_id"]:
        raise BundleError(f"{src.path}: {REPORT_JSON} is report {report['report_id']}, but {MANIFEST} says "
                          f"report {entry['id']}")
    _check_numbers(src, manifest, report)


def changed_number(recorded: Mapping[str, Any], headline: Mapping[str, Any]) -> tuple[str, Any, Any] | None:
    """(key, recorded value, headline value) of the first number a report's headline gives otherwise than
    ``recorded`` says it was measured; None when every number both hold agrees (to rounding)."""
    import math

    for key, value in recorded.items():
        shown = headline.get(key)
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (value, shown)):
            continue
        if not math.isclose(float(value), float(shown), rel_tol=1e-9, abs_tol=1e-12):
            return key, value, shown
    return None


def _check_numbers(src: BundleSource, manifest: dict[str, Any], report: dict[str, Any]) -> None:
    """The report's headline says what the manifest recorded from the workspace's record of that report:
    a ``report.json`` edited after it was measured (a forged top-1) no longer ships or verifies."""
    headline = report.get("headline") if isinstance(report.get("headline"), dict) else {}
    metrics = manifest.get("metrics") if isinstance(manifest.get("metrics"), dict) else {}
    entry = manifest.get("report") if isinstance(manifest.get("report"), dict) else {}
    source = f"report {entry.get('id')}"
    recorded: dict[str, Any] = {}
    for part in (metrics, *(m for m in metrics.get("also_measured") or [] if isinstance(m, dict))):
        if str(part.get("source", "")).startswith(source) and isinstance(part.get("values"), dict):
            recorded.update(part["values"])
    changed = changed_number(recorded, headline)
    if changed is not None:
        key, value, shown = changed
        raise BundleError(f"{src.path}: {REPORT_JSON} gives {key} = {shown}, where {MANIFEST} records {value} "
                          f"from the workspace's {source}: the report was changed after it was measured")
