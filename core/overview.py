"""A plain-dict summary of a workspace: what the CLI's ``info`` prints and the app's pages show."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.store import Workspace
from core.store.schema import current_version


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
         "dtype": v["dtype"], "path": v["path"], "sha256": v["sha256"]}
        for v in ws.vector_sets()
    ]
    runs = ws.runs()
    return {
        "workspace": str(Path(ws.root).resolve()),
        "schema_version": current_version(ws.db),
        "models": models,
        "items": ws.split_counts(),
        "judgments": ws.judgment_counts(),
        "labelled_items": ws.db.execute("select count(*) from items where label is not null").fetchone()[0],
        "vector_sets": vector_sets,
        "runs": [{"id": r["id"], "kind": r["kind"], "method": r["method"], "status": r["status"]} for r in runs],
        "adapters": [{"id": a["id"], "run_id": a["run_id"], "kind": a["kind"], "direction": a["direction"],
                      "in_dim": a["in_dim"], "out_dim": a["out_dim"]} for a in ws.adapters()],
        "reports": [{"id": r["id"], "run_id": r["run_id"], "json_file": r["json_file"]} for r in ws.reports()],
        "bundles": [{"id": b["id"], "path": b["path"]} for b in ws.bundles()],
    }


def overview_text(info: dict[str, Any]) -> str:
    lines = [f"workspace {info['workspace']} (schema v{info['schema_version']})"]
    lines.append("items: " + (", ".join(f"{k} {v}" for k, v in info["items"].items()) or "none"))
    if info.get("judgments"):
        lines.append("judgments: " + ", ".join(f"{split} {c['judgments']} ({c['relevant']} relevant, "
                                                f"{c['queries']} queries)" for split, c in info["judgments"].items()))
    lines.append("models:" if info["models"] else "models: none")
    for m in info["models"]:
        lines.append(f"  {m['name']:<12} {m['role']:<5} {m['kind']:<12} dim {m['dim']}  sha256 {str(m['sha256'])[:12]}")
    lines.append("vector sets:" if info["vector_sets"] else "vector sets: none")
    for v in info["vector_sets"]:
        lines.append(f"  #{v['id']} {v['model']:<12} {v['name']:<12} {v['count']} x {v['dim']} {v['dtype']}")
    if info["runs"]:
        lines.append(f"runs: {len(info['runs'])} (" + ", ".join(
            f"#{r['id']} {r['kind']}/{r['method']} {r['status']}" for r in info["runs"][-5:]) + ")")
    return "\n".join(lines)
