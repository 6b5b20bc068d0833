"""Scale-out commands: ``transform`` (a partitioned gallery through a bundle, locally or on Ray)."""

from __future__ import annotations

import argparse
from typing import Any

from core.cli.main import add_common
from core.progress import StderrProgress

Result = tuple[dict[str, Any], str]


def add_engine_flags(p: argparse.ArgumentParser) -> None:
    """--engine local|ray and where the Ray cluster is (shared by every command that scales out)."""
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="where the gallery work runs: this process (local) or a Ray cluster (ray)")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="Ray cluster to attach to (default: RAY_ADDRESS, else a local Ray started for the job)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("transform", help="forward-transform a partitioned Parquet gallery with a bundle "
                                         "(resumable by partition; --engine ray runs partitions on a cluster)")
    add_common(p, workspace=False)
    p.add_argument("--bundle", required=True, help="bundle (.zip or folder) with a forward (old -> new) layer")
    p.add_argument("--from", dest="source", required=True, metavar="URI",
                   help="input dataset, parquet:///folder of .parquet files (only read)")
    p.add_argument("--to", dest="target", required=True, metavar="URI",
                   help="output dataset folder, parquet:///folder (new, or an unfinished earlier run to resume)")
    p.add_argument("--id-column", default="id", help="id column (default id)")
    p.add_argument("--vector-column", default="vector", help="fixed-size-list vector column (default vector)")
    p.add_argument("--num-cpus", type=int, metavar="N", help="CPUs of the local Ray started for the job")
    add_engine_flags(p)
    p.set_defaults(handler=cmd_transform)


def cmd_transform(args: argparse.Namespace) -> Result:
    from core.scale.gallery_transform import transform_gallery

    r = transform_gallery(args.bundle, args.source, args.target, engine=args.engine, ray_address=args.ray_address,
                          num_cpus=args.num_cpus, id_col=args.id_column, vec_col=args.vector_column,
                          on_progress=StderrProgress("transform"))
    text = (f"transformed {r.rows} rows in {r.written} partitions on {r.engine} ({r.rows_per_s:,.0f} rows/s); "
            f"{r.skipped} partitions were already done; output: {r.target}")
    return r.to_dict(), text
