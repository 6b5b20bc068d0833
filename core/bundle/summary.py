"""A bundle's description without running it: ``embridge bundle inspect`` and the app's Export page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from embridge.core.bundle.archive import BundleLimits, open_bundle
from embridge.core.bundle.manifest import parse_manifest
from embridge.core.bundle.measured import (
    chain_step_lines,
    measured_groups,
    measurements,
    on,
    renamed_line,
    verdict_line,
)


def inspect_bundle(path: str | Path, limits: BundleLimits | None = None) -> dict[str, Any]:
    """The manifest and the file list of a bundle (safety checks only; ``verify`` checks hashes)."""
    with open_bundle(path, limits) as src:
        manifest = parse_manifest(src)
        files = [{"name": n, "bytes": src.size(n)} for n in src.names()]
    return {"path": str(Path(path)), "format": "zip" if Path(path).is_file() else "folder",
            "verified": False, "manifest": manifest, "measured": measurements(manifest), "files": files,
            "total_bytes": sum(f["bytes"] for f in files)}


def _model_line(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "?"
    sha = (entry.get("sha256") or "")[:12]
    return f"{entry.get('name')} ({entry.get('dim') or '?'}-d{', sha256 ' + sha if sha else ''})"


def bundle_text(manifest: dict[str, Any], stale_note: bool = True) -> str:
    """A few human lines about a bundle's manifest; ``stale_note=False`` where the caller says that the
    numbers are outgrown in a WARNING line of its own (an export), so it is not said twice."""
    a = manifest["adapter"]
    lines = [f"adapter: {a['kind']} ({a['direction']}), {a['in_dim']} -> {a['out_dim']} dims, "
             f"inputs: {' + '.join(a['inputs'])}",
             f"old model: {_model_line(manifest['models'].get('old'))}",
             f"new model: {_model_line(manifest['models'].get('new'))}",
             f"normalisation: inputs {manifest['normalisation']['input']}, outputs {manifest['normalisation']['output']}",
             f"created {manifest['created']} by Embridge {manifest['embridge_version']} "
             f"(format {manifest['format_version']})"]
    if len(manifest.get("chain", [])) > 1:
        lines.append("chain: " + " then ".join(f"run {s['run_id']} {s['kind']} {s['new_model']}->{s['old_model']}"
                                               if s["direction"] != "forward" else
                                               f"run {s['run_id']} {s['kind']} {s['old_model']}->{s['new_model']}"
                                               for s in manifest["chain"]))
    entry = manifest.get("portable")
    if isinstance(entry, dict):
        files = " + ".join(f for f in (entry.get("file"), entry.get("onnx")) if f)
        lines.append(f"torch-free runtime: {entry.get('runtime')} ({files})")
    else:
        lines.append("torch-free runtime: none (format 1: torch only)")
    probes = manifest.get("probes")
    if isinstance(probes, dict) and isinstance(probes.get("source"), str):  # what verify reproduces
        source = probes["source"]
        lines.append(f"probes: {source}" if source[:1].isdigit() else f"probes: {probes.get('count')} {source}")
    method = a.get("method") if isinstance(a.get("method"), dict) else {}
    if method.get("serving"):
        lines.append(f"serving: {method['serving']}")
    if method.get("kind") == "cascade":
        lines.append("  (the numbers below are the cascade's; the layer alone over the whole old index is "
                     "not the measured system)")
    report = manifest.get("report", {})
    lines.append(f"report: {report['id']}" if report.get("id") is not None else "report: none")
    lines += [f"metrics ({sources}){on(protocol)}: {numbers}"
              for sources, protocol, numbers in measured_groups(manifest, keys=None, sep="=")]
    lines += chain_step_lines(manifest, keys=None, sep="=")
    if stale_note and manifest.get("measured_before_changes"):
        lines.append(f"note: these numbers were {manifest['measured_before_changes']}")
    warning = verdict_line(manifest)
    if warning:
        lines.insert(0, warning)  # the first line a reader sees
    renamed = renamed_line(manifest)
    if renamed:
        lines.append(renamed)
    if manifest.get("gallery_transformed"):
        lines.append(f"gallery_transformed: {manifest['gallery_transformed']['count']} vectors")
    return "\n".join(printable(line) for line in lines)


def printable(text: str) -> str:
    """``text`` with control and format characters escaped (``\x1b``, ``\n``): a bundle is untrusted
    input, and a manifest's strings must not move the cursor, recolour or forge lines of the output."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
