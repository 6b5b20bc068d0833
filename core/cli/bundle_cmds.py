"""Bundle commands: ``embridge bundle export | verify | inspect | apply``.

Only ``export`` reads a workspace; the others take a bundle path alone, so they run where the
bundle is deployed.
"""

from __future__ import annotations

import argparse
from typing import Any

from embridge.core.cli.main import add_common
from embridge.core.cli.option_types import MEBIBYTES, PATH, RUN_ID, number, run_id_list
from embridge.core.progress import StderrProgress

Result = tuple[dict[str, Any], str]


def register(sub: argparse._SubParsersAction) -> None:
    bundle = sub.add_parser("bundle", help="export, verify, inspect and apply upgrade bundles")
    cmds = bundle.add_subparsers(dest="bundle_command", required=True, metavar="ACTION")

    p = cmds.add_parser("export", help="export a run's adapter (or a chain of runs) as a bundle")
    add_common(p)
    p.add_argument("--run", type=RUN_ID, action="append", dest="runs", metavar="ID",
                   help="training run to export (repeat for a chain; default: the latest)")
    p.add_argument("--chain", type=run_id_list, metavar="ID1,ID2", help="comma-separated run ids forming a chain")
    p.add_argument("--out", type=PATH, required=True, metavar="DIR_OR_ZIP", help="bundle folder, or a path ending in .zip")
    p.add_argument("--report", type=RUN_ID, metavar="ID", help="report to include (default: the run's latest)")
    p.add_argument("--gallery", action=argparse.BooleanOptionalAction, default=None,
                   help="include the transformed gallery (default: yes for old->new layers)")
    p.add_argument("--probes", type=number(int, low=1, high=100_000), default=64, help="number of probe vectors (default 64)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle at --out (never a folder holding files the bundle does not list)")
    p.set_defaults(handler=cmd_export)

    p = cmds.add_parser("verify", help="check a bundle's hashes and re-run its adapter on the probes")
    _path_args(p)
    _runtime_arg(p, "runtime that re-runs the probes (auto: the torch-free one, and torch when installed)")
    p.set_defaults(handler=cmd_verify)

    p = cmds.add_parser("inspect", help="show a bundle's manifest and files")
    _path_args(p)
    p.set_defaults(handler=cmd_inspect)

    p = cmds.add_parser("apply", help="transform a vector file with a bundle (chunked, resumable)")
    _path_args(p)
    p.add_argument("--vectors", type=PATH, required=True, metavar="IN.npy", help="input vectors (.npy, n x in_dim)")
    p.add_argument("--out", type=PATH, required=True, metavar="OUT.npy", help="output vectors (.npy, float32)")
    p.add_argument("--old-vectors", type=PATH, metavar="OLD.npy", help="old-model query vectors (fusion bundles only)")
    p.add_argument("--normalise", action=argparse.BooleanOptionalAction, default=True,
                   help="L2-normalise the outputs, as the manifest's normalisation.output says a search takes "
                        "them (default); --no-normalise writes the layer's raw outputs")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out (only a .npy file, never another kind of file)")
    p.add_argument("--chunk-rows", type=number(int, low=1, high=1 << 28), default=65_536, help="rows per chunk (default 65536)")
    _runtime_arg(p, "auto: numpy for linear layers, onnxruntime for the others (no torch); torch: adapter.pt")
    p.set_defaults(handler=cmd_apply)


def _runtime_arg(p: argparse.ArgumentParser, text: str) -> None:
    p.add_argument("--runtime", choices=["auto", "numpy", "onnx", "torch"], default="auto", help=text)


def _path_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", type=PATH, metavar="PATH", help="bundle folder or .zip")
    add_common(p, workspace=False)
    p.add_argument("--max-member-mb", type=MEBIBYTES, help="refuse members larger than this (MiB)")
    p.add_argument("--max-total-mb", type=MEBIBYTES, help="refuse bundles larger than this uncompressed (MiB)")


def _limits(args: argparse.Namespace) -> Any:
    from dataclasses import replace

    from embridge.core.bundle import BundleLimits

    limits = BundleLimits.from_env()
    if args.max_member_mb is not None:
        limits = replace(limits, max_member_bytes=int(args.max_member_mb * (1 << 20)))
    if args.max_total_mb is not None:
        limits = replace(limits, max_total_bytes=int(args.max_total_mb * (1 << 20)))
    return limits


def _run_ids(args: argparse.Namespace) -> list[int] | None:
    if args.runs and args.chain:  # merged, a run named by both read as "a run appears twice"
        from embridge.core.errors import UsageError

        raise UsageError("--chain", "names the chain's runs itself; give them with --chain alone, or with --run "
                                    "once each, not both")
    return [*(args.runs or []), *(args.chain or [])] or None


def cmd_export(args: argparse.Namespace) -> Result:
    from embridge.core.bundle import bundle_text, export_bundle
    from embridge.core.bundle.measured import export_warnings, no_report_warning, stale_warning
    from embridge.core.errors import InputError
    from embridge.core.store import Workspace

    runs = _run_ids(args)
    with Workspace.open(args.workspace) as ws:
        try:
            result = export_bundle(ws, args.out, runs, report_id=args.report, gallery=args.gallery,
                                   probes=args.probes, overwrite=args.overwrite,
                                   on_progress=StderrProgress("export"))
        except InputError as exc:  # a run of the chain is named by the option the user gave it with
            if args.chain and exc.source == "--run":
                raise InputError("--chain", exc.problem) from None
            raise
    stale = stale_warning(result)
    text = (f"exported bundle {result['bundle_id']} to {result['path']} ({result['format']}, "
            f"{result['bytes']} bytes, verified)\n" + bundle_text(result["manifest"], stale_note=not stale)
            + (f"\n{stale}" if stale else "") + (f"\n{no_report}" if (no_report := no_report_warning(result)) else ""))
    return {**result, "warning": "\n".join(export_warnings(result)) or None}, text  # the text's WARNINGs, in JSON too


def cmd_verify(args: argparse.Namespace) -> Result:
    from embridge.core.bundle import verify_bundle

    result = verify_bundle(args.path, _limits(args), on_progress=StderrProgress("verify"), runtime=args.runtime)
    runs = "; ".join(f"{name} reproduces {p['count']} probe outputs (max abs difference {p['max_abs_diff']:.3g}, "
                     f"rtol={p['rtol']}, atol={p['atol']})" for name, p in result["runtimes_checked"].items())
    text = f"{args.path}: OK: {result['files_checked']} files match their sha256; {runs}"
    if result.get("torch_skipped"):  # installed but broken: the TorchScript payload went unchecked, said so
        text += f"\nnote: the TorchScript payload was not checked: {result['torch_skipped']}"
    return result, text


def cmd_inspect(args: argparse.Namespace) -> Result:
    from embridge.core.bundle import bundle_text, inspect_bundle

    result = inspect_bundle(args.path, _limits(args))
    files = "\n".join(f"  {f['name']}  {f['bytes']} bytes" for f in result["files"])
    text = (f"{args.path} ({result['format']}, not verified; run 'embridge bundle verify')\n"
            + bundle_text(result["manifest"]) + "\nfiles:\n" + files)
    return result, text


def cmd_apply(args: argparse.Namespace) -> Result:
    from embridge.core.bundle import apply_bundle

    result = apply_bundle(args.path, args.vectors, args.out, old_vectors=args.old_vectors,
                          normalise_output=args.normalise, chunk_rows=args.chunk_rows, limits=_limits(args),
                          runtime=args.runtime, overwrite=args.overwrite, on_progress=StderrProgress("apply"))
    resumed = f", resumed at row {result['resumed_from']}" if result["resumed_from"] else ""
    note = f"\nnote: {result['note']}" if result.get("note") else ""
    return result, (f"wrote {result['rows']} x {result['dim']} vectors to {result['path']} "
                    f"({result['runtime']} runtime){resumed}{note}")
