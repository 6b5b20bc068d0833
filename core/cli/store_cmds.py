"""Vector-store commands: migrate, rollback, check (``import --from`` lives with import)."""

from __future__ import annotations

import argparse
from typing import Any

from embridge.core.cli.engine_flags import add_engine_flags
from embridge.core.cli.main import add_common
from embridge.core.cli.option_types import BATCH_SIZE, NON_BLANK, PATH, POSITIVE_COUNT, SEED
from embridge.core.progress import StderrProgress

Result = tuple[dict[str, Any], str]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("migrate", help="move a vector store's gallery to the new model's space through a bundle")
    add_common(p, workspace=False)
    p.add_argument("--bundle", type=PATH, required=True, help="bundle (.zip or folder) from 'embridge bundle export'")
    p.add_argument("--from", dest="source", type=PATH, required=True, metavar="URI", help="source collection (only read)")
    p.add_argument("--to", dest="target", type=PATH, required=True, metavar="URI", help="new (shadow) collection to write")
    p.add_argument("--order", choices=["random", "planner"], default="random",
                   help="which points get real new vectors first (with --new-vectors; default random)")
    p.add_argument("--new-vectors", type=PATH, metavar="FILE.npz", help="real new-model vectors (arrays ids, vectors) to attach")
    p.add_argument("--backfill", type=POSITIVE_COUNT, metavar="N", help="attach new vectors to at most N points")
    p.add_argument("--seed", type=SEED, help="with --new-vectors: seed of the random order (default 0)")
    p.add_argument("--switch", action="store_true", help="after verification, move the alias to the new collection")
    p.add_argument("--alias", type=NON_BLANK, help="alias --switch moves (default: the alias=NAME parameter of --to); needs --switch")
    p.add_argument("--batch", type=BATCH_SIZE, help="points per batch (default 4096; --engine ray writes a "
                   "partition at a time)")
    add_engine_flags(p)  # --engine ray: LanceDB and Parquet stores, transformed partition by partition on Ray
    p.set_defaults(handler=cmd_migrate)

    p = sub.add_parser("rollback", help="point a store's alias back at an earlier collection")
    add_common(p, workspace=False)
    p.add_argument("--to", dest="target", type=PATH, required=True, metavar="URI", help="collection to serve again")
    p.add_argument("--alias", type=NON_BLANK, help="alias to move (default: the alias=NAME parameter of --to)")
    p.set_defaults(handler=cmd_rollback)

    p = sub.add_parser("check", help="how many points of a store are in which model's space")
    add_common(p, workspace=False)
    p.add_argument("--uri", type=PATH, required=True, help="store collection (or alias) to check")
    p.add_argument("--label-field", type=NON_BLANK, help="payload field with labels: also measure top-1 label agreement")
    p.add_argument("--served-as", type=NON_BLANK, help="for a half-migrated store: the model version its queries use "
                   "('unmarked' for the points no migration wrote, as the old model served them)")
    p.add_argument("--sample", type=POSITIVE_COUNT, default=2000, help="queries for the quality measure (default 2000)")
    p.set_defaults(handler=cmd_check)


def cmd_migrate(args: argparse.Namespace) -> Result:
    from embridge.core.connectors.migration import BATCH_POINTS, migrate_store

    if args.engine == "ray":
        from embridge.core.errors import UsageError
        from embridge.core.scale.ray_migrate import migrate_on_ray

        if args.new_vectors or args.backfill is not None or args.order != "random" or args.seed is not None:
            raise UsageError("--engine ray", "migrates through the bundle only; attach real new vectors "
                             "(--new-vectors, --backfill, --order, --seed) with --engine local")
        if args.batch is not None:
            raise UsageError("--batch", "sizes the local engine's batches; --engine ray writes a partition at a time")
        result = migrate_on_ray(args.bundle, args.source, args.target, switch=args.switch, alias=args.alias,
                                ray_address=args.ray_address, on_progress=StderrProgress("migrate"))
    else:
        result = migrate_store(args.bundle, args.source, args.target, order=args.order, switch=args.switch,
                               alias=args.alias, batch_size=args.batch or BATCH_POINTS, new_vectors=args.new_vectors,
                               backfill=args.backfill, seed=args.seed, on_progress=StderrProgress("migrate"))
    return result.to_dict(), result.text()


def cmd_rollback(args: argparse.Namespace) -> Result:
    from embridge.core.connectors.migration import rollback_store

    out = rollback_store(args.target, args.alias)
    return out, out["text"]


def cmd_check(args: argparse.Namespace) -> Result:
    from embridge.core.connectors.check import check_store
    from embridge.core.errors import UsageError

    if args.served_as is not None and args.label_field is None:
        raise UsageError("--served-as", "chooses the points the quality measure searches; it needs --label-field")
    result = check_store(args.uri, args.label_field, args.served_as, args.sample)
    return result.to_dict(), result.text()
