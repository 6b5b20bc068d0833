"""Workspace commands: init, info, import, model add|list|remove|rename|set-role, embed, demo."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from embridge.core.cli.main import add_common
from embridge.core.cli.option_types import BATCH_SIZE, NON_BLANK, PATH, POSITIVE_COUNT, SEED
from embridge.core.errors import EmbridgeError, UsageError
from embridge.core.import_summary import items_import_text, qrels_text
from embridge.core.model_kinds import KINDS as MODEL_KINDS
from embridge.core.progress import StderrProgress
from embridge.core.store import Workspace

Result = tuple[dict[str, Any], str]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="create an empty workspace")
    add_common(p)
    p.set_defaults(handler=cmd_init)

    p = sub.add_parser("info", help="show models, items, vector sets and runs")
    add_common(p)
    p.add_argument("--verify", action="store_true",
                   help="also hash every stored file afresh against its recorded sha256 and run SQLite's "
                        "integrity check (reads the whole workspace); exit status 1 when anything is damaged")
    p.set_defaults(handler=cmd_info)

    p = sub.add_parser("import", help="import items: image folder, CSV/JSONL texts, vectors, a BEIR folder "
                                      "or a vector store")
    add_common(p)
    source = p.add_mutually_exclusive_group()
    source.add_argument("--path", type=PATH, help="folder or file to import (may be left out when only --qrels is given)")
    source.add_argument("--from", dest="from_uri", type=PATH, metavar="URI",
                        help="vector store collection, e.g. qdrant:///data/db?collection=docs")
    p.add_argument("--label-field", type=NON_BLANK, help="with --from: payload field holding the label")
    p.add_argument("--text-field", type=NON_BLANK, help="with --from: payload field holding the text")
    p.add_argument("--format", choices=["images", "csv", "jsonl", "vectors", "beir"], help="default: from the path")
    p.add_argument("--qrels", type=PATH, help="relevance judgments: query key, item key, grade[, split] a line (tsv, csv or space-separated; TREC's four columns too)")
    p.add_argument("--qrels-seed", type=SEED,
                   help="seed of the train/dev/test split of queries when --qrels gives no split, and of the dev "
                        "queries a BEIR folder without dev.tsv holds out of its train queries (default 0)")
    p.add_argument("--split", type=NON_BLANK, help="split name for the imported items (e.g. gallery, query); with "
                   "--qrels alone, the judgments' split (train, dev or test) for lines that name none")
    p.add_argument("--model", help="for vector files: the (vectors-kind) model these vectors belong to")
    p.add_argument("--ids", type=PATH, help="for .npy vector files: text file with one item key a line")
    p.add_argument("--key-column", type=NON_BLANK, help="CSV/JSONL: the key column (default: 'key' if present, else "
                   "<file stem>:<record number>)")
    p.add_argument("--text-column", type=NON_BLANK, default="text", help="CSV/JSONL: the column holding each item's text "
                   "(default: text)")
    p.add_argument("--label-column", type=NON_BLANK, help="CSV/JSONL: the label column (default: 'label' if present)")
    p.set_defaults(handler=cmd_import)

    model = sub.add_parser("model", help="manage models").add_subparsers(dest="model_command", required=True,
                                                                               metavar="ACTION")
    p = model.add_parser("add", help="add a model checkpoint to the workspace")
    add_common(p)
    p.add_argument("--name", required=True, help="the model's name in the workspace (unique)")
    p.add_argument("--path", type=PATH, required=True, help="checkpoint file or model folder")
    p.add_argument("--kind", type=NON_BLANK, choices=MODEL_KINDS, metavar="KIND",
                   help=f"{', '.join(MODEL_KINDS)} (default: from the path)")
    p.add_argument("--role", choices=["old", "new", "other"], default="other",
                   help="old: the model the gallery was embedded by; new: the upgrade (default other)")
    p.add_argument("--arch", help="built-in architecture for a bare state_dict (mlp, small_cnn)")
    p.add_argument("--arch-config", help="JSON object of the architecture's settings, for a bare state_dict")
    p.add_argument("--input-shape", type=NON_BLANK,
                   help="input shape without batch, e.g. 1,28,28 (when it cannot be inferred)")
    p.add_argument("--query-prompt", help="text models: prepended to query items (default: the model's own "
                   "'query' prompt, else its default prompt, else none; '' for none)")
    p.add_argument("--document-prompt", help="text models: prepended to gallery items (default: the model's "
                   "own 'document', 'passage' or 'corpus' prompt, else its default prompt, else none; '' for none)")
    p.add_argument("--pooling", choices=["mean", "cls", "last"],
                   help="transformers and ONNX folders: how token states become one vector (default: from "
                   "the folder's config; mean for encoders, last token for decoders)")
    p.set_defaults(handler=cmd_model_add)
    p = model.add_parser("list", help="list models")
    add_common(p)
    p.set_defaults(handler=cmd_model_list)
    p = model.add_parser("remove", help="remove a model that no vector set or adapter uses")
    add_common(p)
    p.add_argument("--name", required=True, help="the model to remove")
    p.set_defaults(handler=cmd_model_remove)
    p = model.add_parser("rename", help="rename a model (its adapters and runs follow)")
    add_common(p)
    p.add_argument("--name", required=True, help="the model's name now")
    p.add_argument("--to", type=NON_BLANK, required=True, help="the new name")
    p.set_defaults(handler=cmd_model_rename)
    p = model.add_parser("set-role", help="give a model the role old, new or other")
    add_common(p)
    p.add_argument("--name", required=True, help="the model whose role changes")
    p.add_argument("--role", required=True, choices=["old", "new", "other"],
                   help="old: the model the gallery was embedded by; new: the upgrade; other: neither")
    p.set_defaults(handler=cmd_model_set_role)

    p = sub.add_parser("embed", help="embed items with a model into a vector set")
    add_common(p)
    p.add_argument("--model", required=True, help="the workspace model to embed with")
    p.add_argument("--split", type=NON_BLANK, help="only items of this split (default: all items)")
    p.add_argument("--sample", type=POSITIVE_COUNT, help="embed a sample of this many items: judged test queries and "
                   "their documents first, then items already embedded, then a seeded random draw")
    p.add_argument("--seed", type=SEED, default=0, help="seed of --sample's random draw (default 0)")
    p.add_argument("--device", type=NON_BLANK, default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--batch-size", type=BATCH_SIZE, default=256, help="items per model call (default 256)")
    p.set_defaults(handler=cmd_embed)

    p = sub.add_parser("demo", help="build a bundled demo workspace (handwritten digits, or text retrieval)")
    add_common(p)
    p.add_argument("--seed", type=SEED, default=0, help="seed of the demo's models and splits (default 0)")
    p.add_argument("--kind", choices=["digits", "text"], default="digits",
                   help="digits: images with class labels (default); text: Bible verses found from another "
                   "translation, with relevance judgments and two text encoders")
    p.set_defaults(handler=cmd_demo)


def cmd_init(args: argparse.Namespace) -> Result:
    ws = Workspace.create(args.workspace)
    ws.close()
    return {"workspace": str(ws.root.resolve()), "created": True}, f"created workspace {ws.root}"


def cmd_info(args: argparse.Namespace) -> Result:
    from embridge.core.overview import overview_text, workspace_overview

    with Workspace.open(args.workspace) as ws:
        info = workspace_overview(ws)
        if not args.verify:
            return info, overview_text(info)
        from embridge.core.store.workspace_verify import verify_workspace

        check = verify_workspace(ws, on_progress=StderrProgress("verify"))
    args.exit_status = 0 if check.ok else 1
    return {**info, "verify": check.to_dict()}, overview_text(info) + "\n" + check.text()


# options that describe files (--path, --qrels) and those that describe a store's points (--from)
FILE_ONLY = {"format": "--format", "qrels": "--qrels", "qrels_seed": "--qrels-seed", "ids": "--ids",
             "key_column": "--key-column", "label_column": "--label-column"}
STORE_ONLY = {"label_field": "--label-field", "text_field": "--text-field"}


def cmd_import(args: argparse.Namespace) -> Result:
    seed = 0 if args.qrels_seed is None else args.qrels_seed
    if args.model is not None and not args.model.strip():
        raise UsageError("--model", "is empty; name the model the vectors belong to")
    if args.from_uri:
        given = [flag for key, flag in FILE_ONLY.items() if getattr(args, key) is not None]
        given += ["--text-column"] if args.text_column != "text" else []
        if given:
            raise UsageError(", ".join(given), f"describe{'s' if len(given) == 1 else ''} files given with --path or "
                             "--qrels, not a store's points (--from); use --label-field and --text-field")
        return _import_from_store(args)
    given = [flag for key, flag in STORE_ONLY.items() if getattr(args, key) is not None]
    if given:
        raise UsageError(", ".join(given), f"name{'s' if len(given) == 1 else ''} a payload field of a store's points "
                         "(--from URI); for files use --label-column and --text-column")
    if args.path is None and args.qrels is None:
        raise UsageError(None, "give --path (a folder or file to import), --from URI, or --qrels FILE to import "
                               "judgments only")
    if args.format is None and args.path is not None and Path(args.path).is_dir():
        from embridge.core.importers import detect_format

        args.format = detect_format(Path(args.path))
    _check_format_options(args)
    if args.format == "beir":
        if args.qrels is not None or args.path is None:
            raise UsageError("--format beir", "takes --path DIR only: its judgments come from DIR/qrels/")
        from embridge.core.beir_import import import_beir

        with Workspace.open(args.workspace) as ws:
            summary = import_beir(ws, args.path, on_progress=StderrProgress("import beir"), seed=seed)
        return summary.to_dict(), summary.text()
    if args.path is None:
        from embridge.core.qrels import import_qrels

        with Workspace.open(args.workspace) as ws:
            qrels = import_qrels(ws, args.qrels, split=args.split, seed=seed)
        return {"qrels": qrels.to_dict(), "count": 0}, qrels_text(qrels.to_dict())
    from embridge.core.importers import import_items

    with Workspace.open(args.workspace) as ws:
        out = import_items(ws, args.path, args.format, args.split, args.model, args.ids,
                           args.key_column, args.text_column, args.label_column,
                           qrels=args.qrels, qrels_seed=seed)
    return out, items_import_text(out, args.model)


def _check_format_options(args: argparse.Namespace) -> None:
    """Refuse options the import's format would ignore (a CSV import with --model stored no vectors)."""
    fmt = args.format
    if fmt is None and args.path is not None:
        from embridge.core.importers import detect_format

        try:
            fmt = detect_format(Path(args.path))
        except EmbridgeError:
            return  # the import itself names the path it cannot tell
    if args.path is None and args.qrels is not None:
        _check_qrels_only_options(args)
    if args.qrels_seed is not None and args.qrels is None and fmt != "beir":
        raise UsageError("--qrels-seed", "seeds the split of --qrels judgments, or of a BEIR folder's dev queries; "
                         "give --qrels, or leave it out")
    if fmt == "beir" and args.split is not None:
        raise UsageError("--split", "a BEIR folder's items are its corpus (gallery) and its queries (query); "
                         "leave --split out")
    if args.path is not None and fmt not in (None, "vectors"):
        given = [flag for flag, value in (("--model", args.model), ("--ids", args.ids)) if value is not None]
        if given:
            what = {"images": "an image folder", "csv": "a CSV file", "jsonl": "a JSONL file",
                    "beir": "a BEIR folder"}.get(fmt, f"a {fmt} import")
            named = Path(args.path).suffix.lower() in (".npz", ".npy") and Path(args.path).is_dir()  # like a file
            read = f" ({args.path} is a folder)" if named else ""
            raise UsageError(", ".join(given), f"describe{'s' if len(given) == 1 else ''} a vector file "
                             f"(--format vectors); this import reads {what}{read}, which has no vectors to store")


def _check_qrels_only_options(args: argparse.Namespace) -> None:
    """With --qrels alone, --split is the judgments' split (for lines that name none); the options that
    describe items to import would be ignored, so they are refused (--split test was taken for the
    items' split and the held-out judgments were split at random into train and dev)."""
    from embridge.core.store.judgments import JUDGMENT_SPLITS

    fmt = None if args.format == "beir" else args.format  # named by the BEIR check, which says what it takes
    given = [flag for flag, value in (("--format", fmt), ("--model", args.model), ("--ids", args.ids),
                                      ("--key-column", args.key_column), ("--label-column", args.label_column),
                                      ("--text-column", None if args.text_column == "text" else args.text_column))
             if value is not None]
    if given:
        raise UsageError(", ".join(given), f"describe{'s' if len(given) == 1 else ''} items to import with "
                         "--path; --qrels alone imports judgments only")
    if args.split is not None and args.split not in JUDGMENT_SPLITS:
        raise UsageError("--split", f"with --qrels alone names the judgments' split ({', '.join(JUDGMENT_SPLITS)}), "
                         f"not '{args.split}'")
    if args.split is not None and args.qrels_seed is not None:
        raise UsageError("--qrels-seed", "seeds a random split of the judgments, and --split gives theirs; "
                         "give one of them")


def _import_from_store(args: argparse.Namespace) -> Result:
    from embridge.core.connectors.gallery_import import import_from_store

    with Workspace.open(args.workspace) as ws:
        out = import_from_store(ws, args.from_uri, args.model, args.label_field, args.text_field,
                                args.split or "gallery", on_progress=StderrProgress("import"))
    return out.to_dict(), (f"imported {out.count} points from {out.store} ({out.new_items} new items), "
                           f"vectors of model {out.model} (dim {out.dim}) in vector set {out.vector_set}"
                           + (f"\nnote: {out.note}" if out.note else ""))


def cmd_model_add(args: argparse.Namespace) -> Result:
    from embridge.core.models import TextOptions
    from embridge.core.models.adding import add_model, parse_input_shape
    from embridge.core.paths import check_name

    check_name(args.name, "--name")  # before the workspace or the checkpoint is opened
    shape = parse_input_shape(args.input_shape)
    arch_config = _json_object(args.arch_config, "--arch-config")
    text = TextOptions(args.query_prompt, args.document_prompt, args.pooling)
    with Workspace.open(args.workspace) as ws:
        added = add_model(ws, args.path, args.name, args.role, kind=args.kind, arch=args.arch,
                          arch_config=arch_config, input_shape=shape, text=text)
    return added.to_dict(), added.line()


def _json_object(raw: str | None, flag: str) -> dict[str, Any] | None:
    import json

    from embridge.core.errors import UsageError

    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UsageError(flag, f"not valid JSON ({exc.msg})") from exc
    except RecursionError:  # arrays nested thousands deep
        raise UsageError(flag, "nested too deeply to be read as JSON") from None
    if not isinstance(value, dict):
        raise UsageError(flag, "expected a JSON object such as '{\"input_dim\": 64, \"out_dim\": 32}'")
    return value


def cmd_model_list(args: argparse.Namespace) -> Result:
    from embridge.core.models.manage import pair_warnings

    with Workspace.open(args.workspace) as ws:
        rows = ws.models()
    models = [{k: m[k] for k in ("name", "role", "kind", "modality", "dim", "params", "sha256")} for m in rows]
    warnings = pair_warnings([{**m, "input_shape": (m.get("spec") or {}).get("input_shape")} for m in rows])
    lines = [f"{m['name']:<14} {m['role']:<5} {m['kind']:<12} dim {m['dim']}" for m in models]
    lines += [f"warning: {w}" for w in warnings] if models else []
    return {"models": models, "warnings": warnings}, "\n".join(lines) or "no models"


def cmd_model_remove(args: argparse.Namespace) -> Result:
    from embridge.core.models.manage import remove_model

    with Workspace.open(args.workspace) as ws:
        data = remove_model(ws, args.name)
    return data, f"removed model {args.name}"


def cmd_model_rename(args: argparse.Namespace) -> Result:
    from embridge.core.models.manage import rename_model

    with Workspace.open(args.workspace) as ws:
        row = rename_model(ws, args.name, args.to)
    return {"name": row["name"], "was": args.name}, f"renamed model {args.name} to {row['name']}"


def cmd_model_set_role(args: argparse.Namespace) -> Result:
    from embridge.core.models.manage import set_model_role

    with Workspace.open(args.workspace) as ws:
        row = set_model_role(ws, args.name, args.role)
    return {"name": row["name"], "role": row["role"]}, f"model {row['name']} now has role {row['role']}"


def cmd_embed(args: argparse.Namespace) -> Result:
    from embridge.core.embed import embed_split
    from embridge.core.embed_summary import embed_summary, embed_warnings

    with Workspace.open(args.workspace) as ws:
        info = embed_split(ws, args.model, args.split, args.sample, args.seed, batch_size=args.batch_size,
                           device=args.device, on_progress=StderrProgress(f"embed {args.model}"))
    data = {"model": args.model, "vector_set": info["id"], "count": info["count"], "dim": info["dim"],
            "path": info["path"], **{k: info[k] for k in ("written", "not_covered", "already_stored", "held_in",
                                                          "truncated", "token_limit", "unknown_only",
                                                          "unknown_example", "zero_vectors", "zero_vector_example")
                               if k in info},
            "warning": "; ".join(embed_warnings(info)) or None}  # on stderr too with --json
    return data, embed_summary(args.model, info)


def cmd_demo(args: argparse.Namespace) -> Result:
    from embridge.core.overview import overview_text, workspace_overview

    if args.kind == "text":
        from embridge.core.demo_text import build_text_demo as build_demo
    else:
        from embridge.core.demo import build_demo
    with build_demo(args.workspace, seed=args.seed, on_progress=StderrProgress("demo")) as ws:
        info = workspace_overview(ws)
    return info, overview_text(info)
