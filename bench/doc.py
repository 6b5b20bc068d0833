"""Render ``docs/performance.md`` from the results JSON files (one per area)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

AREAS = ("fit", "train", "search", "apply", "desktop", "stores", "text", "workflow", "scale")
TITLES = {
    "fit": "Closed-form fits",
    "train": "Training throughput",
    "search": "Report search",
    "apply": "Adapter application",
    "desktop": "Desktop responsiveness",
    "text": "Text embedding",
    "stores": "Vector-store migration",
    "workflow": "Whole workflow",
    "scale": "Scale-out on Ray",
}


def fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not isinstance(value, int | float):
        return str(value)
    v = float(value)
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 1:
        return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
    return f"{v:.3g}"


def verdict(row: dict[str, Any]) -> str:
    if row.get("target") is None:
        return "info"
    if row.get("passed") is None:
        return "not measured" if row.get("measured") is None else "–"
    return "**pass**" if row["passed"] else "**miss**"


def machine_lines(m: dict[str, Any]) -> list[str]:
    return [
        f"- CPU: {m.get('cpu_model')} — {m.get('usable_cpus')} usable of {m.get('logical_cpus')} logical cores",
        f"- Memory: {m.get('memory_gb')} GB; OS: {m.get('os')}",
        f"- Python {m.get('python')}, numpy {m.get('numpy')}, torch {m.get('torch')}, faiss {m.get('faiss')}",
        f"- GPU: {m.get('gpu')}",
        "- Each area's load average at the end of its run is under its table: well above the core count, other "
        "jobs shared the machine and its times are inflated.",
    ]


def area_section(result: dict[str, Any], about: str) -> list[str]:
    area = result["area"]
    out = [f"## {TITLES.get(area, area)}", ""]
    if about:
        out += [about.strip(), ""]
    if "error" in result:
        return [*out, f"This area failed: `{result['error'].strip().splitlines()[-1]}`", ""]
    out += ["| Benchmark | Unit | Measured | Floor | Ratio | Target | Result | Note |",
            "|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        target = (row.get("target") or {}).get("text", "")
        floor = fmt(row.get("floor"))
        if row.get("floor_name") and row.get("floor") is not None:
            floor = f"{floor} ({row['floor_name']})"
        ratio = f"{row['ratio']:.2f}x" if row.get("ratio") is not None else "–"
        out.append(f"| {row['name']} | {row['unit']} | {fmt(row.get('measured'))} | {floor} | {ratio} | "
                   f"{target} | {verdict(row)} | {row.get('note', '')} |")
    out.append("")
    for note in result.get("notes", []):
        out.append(f"- {note}")
    m = result["machine"]
    out += ["", f"Machine for this area: {m.get('cpu_model')}, {m.get('usable_cpus')} cores, torch threads "
                f"{m.get('torch_threads')}, GPU: {m.get('gpu')}; load average at the end "
                f"{', '.join(fmt(x) for x in m.get('load_average') or [])}; ran {fmt(result.get('duration_s'))} s.", ""]
    return out


# ``{{area|row|field|format}}`` in the findings prose: a number taken from the results, so the prose
# cannot drift from the tables. ``row`` is the start of a row's name in that area (the first row that
# matches), or empty for the area's result itself; ``field`` a dotted path in it (``ratio``,
# ``details.transform_only_s``, ``settings.dim``); ``format`` a format spec (``.2f``), or empty for the
# tables' own formatting.
FACT = re.compile(r"\{\{([^{}|]+)\|([^{}|]*)\|([^{}|]+)(?:\|([^{}|]*))?\}\}")


def fact(results: dict[str, dict[str, Any]], here: str, area: str, row: str, field: str,
         spec: str | None) -> str:
    """One ``{{area|row|field|format}}`` of the findings, from the results (``–`` when the area or the row
    was not run or failed; a field a run row lacks is an error, not a silent stale number)."""
    result = results.get(area.strip())
    if result is None or "error" in result:
        return "–"
    node: Any = result
    if row.strip():
        node = next((r for r in result.get("rows", []) if r["name"].startswith(row.strip())), None)
        if node is None or "error" in node or (node.get("note") and "details" not in node):
            return "–"  # that row was not run this time, or failed (its note says why)
    for key in field.strip().split("."):
        if not isinstance(node, dict) or key not in node:
            raise ValueError(f"findings: {here}: the results have no {field.strip()!r}")
        node = node[key]
    if node is None:
        return "–"
    return format(node, spec) if spec else fmt(node)


def fill_facts(text: str, results: dict[str, dict[str, Any]]) -> str:
    return FACT.sub(lambda m: fact(results, m[0], m[1], m[2], m[3], m[4]), text)


def render(results: dict[str, dict[str, Any]], abouts: dict[str, str], intro: str, findings: str = "") -> str:
    lines = ["# Performance", "", intro.strip(), ""]
    # the header describes the machine as the multi-threaded areas saw it (fit and train CPU rows
    # run single-threaded children on purpose; each area's own line says so)
    order = ("search", "desktop", "apply", "train", "fit")
    first = next((results[a] for a in order if a in results and "machine" in results[a]), None)
    if first is not None:
        lines += ["## Machine", "", *machine_lines(first["machine"]), ""]
    summary = [(a, row) for a in AREAS if a in results for row in results[a].get("rows", [])
               if row.get("target") is not None]
    passed = sum(1 for _, r in summary if r.get("passed") is True)
    missed = [f"{a}: {r['name']}" for a, r in summary if r.get("passed") is False]
    lines += ["## Summary", "", f"{passed} of {len(summary)} targeted rows pass; "
              f"{sum(1 for _, r in summary if r.get('passed') is None)} not measured on this machine.", ""]
    if missed:
        lines += ["Misses:", "", *[f"- {m}" for m in missed], ""]
    if findings.strip():
        lines += [fill_facts(findings, results).strip(), ""]
    for area in AREAS:
        if area in results:
            lines += area_section(results[area], abouts.get(area, ""))
    return "\n".join(lines).rstrip() + "\n"


def load_results(folder: Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for area in AREAS:
        path = folder / f"{area}.json"
        if path.exists():
            out[area] = json.loads(path.read_text())
    return out


def write_doc(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
