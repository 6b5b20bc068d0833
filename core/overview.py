"""A plain-dict summary of a workspace: what the CLI's ``info`` prints and the app's pages show."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from embridge.core.store import Workspace
from embridge.core.store.items import QUERY_SPLIT, in_gallery
from embridge.core.store.vector_set_health import SUPERSEDED, damaged_advice, file_problem, replaced


def workspace_overview(ws: Workspace) -> dict[str, Any]:
    models = [
        {"name": m["name"], "role": m["role"], "kind": m["kind"], "modality": m["modality"],
         "dim": m["dim"], "params": m["params"], "sha256": m["sha256"], "path": m["path"],
         "input_shape": (m["spec"] or {}).get("input_shape"),
         "has_classifier": (m["spec"] or {}).get("has_classifier", False),
         "query_prompt": (m["spec"] or {}).get("query_prompt", ""),
         "document_prompt": (m["spec"] or {}).get("document_prompt", ""),
         "pooling": (m["spec"] or {}).get("pooling")}
        for m in ws.models()
    ]
    vector_sets = [
        {"id": v["id"], "model": v["model"], "name": v["name"], "count": v["count"], "dim": v["dim"],
         "dtype": v["dtype"], "path": v["path"], "sha256": v["sha256"],
         "file_missing": not all((Path(ws.root) / v[key]).exists() for key in ("file", "ids_file")),
         "file_problem": file_problem(Path(ws.root), v)}
        for v in ws.vector_sets()
    ]
    for v in vector_sets:
        v["replaced"] = bool(v["file_problem"]) and replaced(ws, v)
    runs = ws.run_summaries()
    return {
        "workspace": str(Path(ws.root).resolve()),
        "schema_version": ws.schema_version(),
        "models": models,
        "items": ws.split_counts(),
        "judgments": ws.judgment_counts(),
        "labelled_items": ws.labelled_count(),
        "label_classes": ws.label_classes(),
        "vector_sets": vector_sets,
        "runs": [{"id": r["id"], "kind": r["kind"], "method": r["method"], "status": r["status"]} for r in runs],
        "adapters": [{"id": a["id"], "run_id": a["run_id"], "kind": a["kind"], "direction": a["direction"],
                      "in_dim": a["in_dim"], "out_dim": a["out_dim"]} for a in ws.adapters()],
        "reports": [{"id": r["id"], "run_id": r["run_id"], "json_file": r["json_file"]} for r in ws.reports()],
        "bundles": [{"id": b["id"], "path": b["path"]} for b in ws.bundles()],
    }


def gallery_splits(split_counts: dict[str, int]) -> dict[str, int]:
    """The splits whose items form the gallery that reports and plans search: every split but the
    query split (items without a split included), as :func:`embridge.core.store.items.in_gallery` says.
    Pages and ``embridge info`` state this."""
    return {name: count for name, count in split_counts.items() if in_gallery(name)}


def gallery_text(split_counts: dict[str, int]) -> str:
    """'gallery: 1027 items (gallery 997 + mine 30); queries: 200 (query split)'."""
    parts = gallery_splits(split_counts)
    total = sum(parts.values())
    inner = " + ".join(f"{k} {v}" for k, v in parts.items())
    text = f"gallery: {total} items" + (f" ({inner})" if len(parts) > 1 else "")
    if QUERY_SPLIT in split_counts:
        text += f"; queries: {split_counts[QUERY_SPLIT]} (split '{QUERY_SPLIT}')"
    return text


def judgments_text(judgments: dict[str, dict[str, int]]) -> str:
    """'judgments: dev 100 (100 relevant, 100 queries), ...' as `info` and the Gallery page say it."""
    return "judgments: " + ", ".join(f"{split} {c['judgments']} ({c['relevant']} relevant, {c['queries']} queries)"
                                     for split, c in judgments.items())


def overview_text(info: dict[str, Any]) -> str:
    lines = [f"workspace {info['workspace']} (schema v{info['schema_version']})"]
    lines.append("items: " + (", ".join(f"{k} {v}" for k, v in info["items"].items()) or "none"))
    if info["items"]:
        lines.append(gallery_text(info["items"]))
    if info.get("judgments"):
        lines.append(judgments_text(info["judgments"]))
    lines.append("models:" if info["models"] else "models: none")
    for m in info["models"]:
        lines.append(f"  {m['name']:<12} {m['role']:<5} {m['kind']:<12} dim {m['dim']}  sha256 {str(m['sha256'])[:12]}")
    lines.append("vector sets:" if info["vector_sets"] else "vector sets: none")
    for v in info["vector_sets"]:
        lines.append(f"  #{v['id']} {v['model']:<12} {v['name']:<12} {v['count']} x {v['dim']} {v['dtype']}"
                     + (f"  {damage_mark(v)}: {v['file_problem']}; "
                        + (SUPERSEDED if v.get("replaced")
                           else damaged_advice(v["model"], int(v["count"]))) if v.get("file_problem") else ""))
    if info["runs"]:
        lines.append(runs_line(info["runs"]))
    return "\n".join(lines)


def runs_line(runs: list[dict[str, Any]]) -> str:
    """'runs: 490 (407 train, 70 report, 13 export; 3 interrupted, 2 cancelled); latest completed training run:
    #436 mlp': the run that report, plan and bundle export take by default, however many came after it."""
    kinds = Counter(str(r["kind"]) for r in runs)
    ended = Counter(str(r["status"]) for r in runs if r["status"] != "completed")
    text = f"runs: {len(runs)} (" + ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())
    text += ("; " + ", ".join(f"{n} {status}" for status, n in sorted(ended.items())) if ended else "") + ")"
    train = [r for r in runs if r["kind"] == "train" and r["status"] == "completed"]
    return text + (f"; latest completed training run: #{train[-1]['id']} {train[-1]['method']}" if train else "")


def damage_mark(vector_set: dict[str, Any]) -> str:
    """What `info` calls a set whose files are not as stored: MISSING (gone) or DAMAGED; '' for an intact one."""
    if not vector_set.get("file_problem"):
        return ""
    return "MISSING" if vector_set.get("file_missing") else "DAMAGED"
