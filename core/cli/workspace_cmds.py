"""Workspace commands: init, info, import, model add, embed, demo."""

from __future__ import annotations

import argparse
from typing import Any

from core.cli.main import add_common
from core.progress import StderrProgress
from core.store import Workspace

Result = tuple[dict[str, Any], str]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="create an empty workspace")
    add_common(p)
    p.set_defaults(handler=cmd_init)

    p = sub.add_parser("info", help="show models, items, vector sets and runs")
    add_common(p)
    p.set_defaults(handler=cmd_info)

    p = sub.add_parser("import", help="import items: image folder, CSV/JSONL texts, vectors, or a BEIR folder")
    add_common(p)
    p.add_argument("--path", help="folder or file to import (may be left out when only --qrels is given)")
    p.add_argument("--format", choices=["images", "csv", "jsonl", "vectors", "beir"], help="default: from the path")
    p.add_argument("--qrels", help="relevance judgments: query key, item key, grade[, split] a line (tsv or csv)")
    p.add_argument("--qrels-seed", type=int, default=0,
                   help="seed of the train/dev/test split of queries when --qrels gives no split (default 0)")
    p.add_argument("--split", help="split name for the imported items (e.g. gallery, query)")
    p.add_argument("--model", help="for vector files: the (vectors-kind) model these vectors belong to")
    p.add_argument("--ids", help="for .npy vector files: text file with one item key a line")
    p.add_argument("--key-column", default="key")
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="label")
    p.set_defaults(handler=cmd_import)

    model = sub.add_parser("model", help="manage models").add_subparsers(dest="model_command", required=True)
    p = model.add_parser("add", help="add a model checkpoint to the workspace")
    add_common(p)
    p.add_argument("--name", required=True)
    p.add_argument("--path", required=True, help="checkpoint file or model folder")
    p.add_argument("--kind", help="torchscript, export, state_dict, vectors, sentence_transformers")
    p.add_argument("--role", choices=["old", "new", "other"], default="other")
    p.add_argument("--arch", help="built-in architecture for a bare state_dict (mlp, small_cnn)")
    p.add_argument("--arch-config", help="JSON object of the architecture's settings, for a bare state_dict")
    p.add_argument("--input-shape", help="input shape without batch, e.g. 1,28,28 (when it cannot be inferred)")
    p.set_defaults(handler=cmd_model_add)
    p = model.add_parser("list", help="list models")
    add_common(p)
    p.set_defaults(handler=cmd_model_list)

    p = sub.add_parser("embed", help="embed items with a model into a vector set")
    add_common(p)
    p.add_argument("--model", required=True)
    p.add_argument("--split", help="only items of this split (default: all items)")
    p.add_argument("--sample", type=int, help="embed a seeded random sample of this many items")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=256)
    p.set_defaults(handler=cmd_embed)

    p = sub.add_parser("demo", help="build the bundled demo workspace (handwritten digits)")
    add_common(p)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=cmd_demo)


def cmd_init(args: argparse.Namespace) -> Result:
    ws = Workspace.create(args.workspace)
    ws.close()
    return {"workspace": str(ws.root.resolve()), "created": True}, f"created workspace {ws.root}"


def cmd_info(args: argparse.Namespace) -> Result:
    from core.overview import overview_text, workspace_overview

    with Workspace.open(args.workspace) as ws:
        info = workspace_overview(ws)
    return info, overview_text(info)


def cmd_import(args: argparse.Namespace) -> Result:
    if args.path is None and args.qrels is None:
        _usage_error("give --path (a folder or file to import) or --qrels FILE to import judgments only")
    if args.format == "beir":
        if args.qrels is not None or args.path is None:
            _usage_error("--format beir takes --path DIR only: its judgments come from DIR/qrels/")
        from core.beir_import import import_beir

        with Workspace.open(args.workspace) as ws:
            summary = import_beir(ws, args.path, on_progress=StderrProgress("import beir"))
        judged = ", ".join(f"{k} {v}" for k, v in summary.judgments.items())
        return summary.to_dict(), (f"imported {summary.documents} documents and {summary.queries} queries "
                                   f"({summary.unjudged_queries} without judgments), judgments: {judged}")
    if args.path is None:
        from core.qrels import import_qrels

        with Workspace.open(args.workspace) as ws:
            qrels = import_qrels(ws, args.qrels, seed=args.qrels_seed)
        return {"qrels": qrels.to_dict(), "count": 0}, _qrels_text(qrels.to_dict())
    from core.importers import import_items

    with Workspace.open(args.workspace) as ws:
        out = import_items(ws, args.path, args.format, args.split, args.model, args.ids,
                           args.key_column, args.text_column, args.label_column,
                           qrels=args.qrels, qrels_seed=args.qrels_seed)
    text = f"imported {out['count']} items ({out['format']}) from {out['path']}"
    if out.get("attached") or out.get("already_stored"):
        text += (f"; stored vectors of model {args.model} for {out['attached']} items"
                 f" ({out['already_stored']} already had them)")
    return out, text + ("; " + _qrels_text(out["qrels"]) if out.get("qrels") else "")


def _usage_error(message: str) -> None:
    """A wrong combination of options: one line and exit status 2, as argparse does."""
    import sys

    sys.stderr.write(f"embridge import: error: {message}\n")
    raise SystemExit(2)


def _qrels_text(qrels: dict[str, Any]) -> str:
    splits = ", ".join(f"{k} {v}" for k, v in qrels["per_split"].items())
    seed = f" (queries split with seed {qrels['split_seed']})" if qrels["split_seed"] is not None else ""
    return f"stored {qrels['judgments']} judgments from {qrels['path']}: {splits}{seed}"


def cmd_model_add(args: argparse.Namespace) -> Result:
    from core.models import describe_model

    spec = describe_model(args.path, kind=args.kind, name=args.name, arch=args.arch,
                          arch_config=_json_object(args.arch_config, "--arch-config"),
                          input_shape=_shape(args.input_shape))
    with Workspace.open(args.workspace) as ws:
        row = ws.add_model(args.name, args.role, spec.to_dict(), args.path)
    data = {k: row[k] for k in ("name", "role", "kind", "modality", "dim", "params", "sha256", "path")}
    return data, f"added model {row['name']} ({row['kind']}, {row['modality']}, dim {row['dim']}, role {row['role']})"


def _json_object(raw: str | None, flag: str) -> dict[str, Any] | None:
    import json

    from core.errors import InputError

    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InputError(flag, f"not valid JSON ({exc.msg})") from exc
    if not isinstance(value, dict):
        raise InputError(flag, "expected a JSON object such as '{\"input_dim\": 64, \"out_dim\": 32}'")
    return value


def _shape(raw: str | None) -> tuple[int, ...] | None:
    from core.errors import InputError

    if raw is None:
        return None
    try:
        shape = tuple(int(part) for part in raw.replace("x", ",").split(",") if part.strip())
    except ValueError as exc:
        raise InputError("--input-shape", f"expected integers like 1,28,28, got '{raw}'") from exc
    if not shape or min(shape) <= 0:
        raise InputError("--input-shape", f"expected positive integers like 1,28,28, got '{raw}'")
    return shape


def cmd_model_list(args: argparse.Namespace) -> Result:
    with Workspace.open(args.workspace) as ws:
        models = [{k: m[k] for k in ("name", "role", "kind", "modality", "dim", "params", "sha256")}
                  for m in ws.models()]
    text = "\n".join(f"{m['name']:<14} {m['role']:<5} {m['kind']:<12} dim {m['dim']}" for m in models)
    return {"models": models}, text or "no models"


def cmd_embed(args: argparse.Namespace) -> Result:
    from core.embed import embed_recorded, sample_ids

    with Workspace.open(args.workspace) as ws:
        ids = sample_ids(ws.item_ids(args.split), args.sample, args.seed)
        info = embed_recorded(ws, args.model, ids, config={"split": args.split, "sample": args.sample},
                              batch_size=args.batch_size, device=args.device,
                              on_progress=StderrProgress(f"embed {args.model}"))
    data = {"model": args.model, "vector_set": info["id"], "count": info["count"], "dim": info["dim"],
            "path": info["path"]}
    return data, f"embedded {info['count']} items with {args.model} (dim {info['dim']}) -> {info['path']}"


def cmd_demo(args: argparse.Namespace) -> Result:
    from core.demo import build_demo
    from core.overview import overview_text, workspace_overview

    with build_demo(args.workspace, seed=args.seed, on_progress=StderrProgress("demo")) as ws:
        info = workspace_overview(ws)
    return info, overview_text(info)
