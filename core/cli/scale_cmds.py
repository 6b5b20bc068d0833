"""Scale-out commands: ``transform`` (a gallery through a bundle) and ``embed-dataset`` (backfill embedding)."""

from __future__ import annotations

import argparse
from typing import Any

from embridge.core.cli.engine_flags import add_engine_flags
from embridge.core.cli.main import add_common
from embridge.core.cli.option_types import NON_BLANK, PATH, number
from embridge.core.progress import StderrProgress

Result = tuple[dict[str, Any], str]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("transform", help="map a partitioned Parquet or Lance dataset's vectors through a bundle's "
                                         "layer into Parquet files or a Lance dataset (resumable by partition; --engine ray runs "
                                         "it as a Ray Data pipeline on a cluster)")
    add_common(p, workspace=False)
    p.add_argument("--bundle", type=PATH, required=True, help="bundle (.zip or folder) with a one-input layer (forward old -> new "
                                                   "for a stored gallery)")
    p.add_argument("--from", dest="source", type=PATH, required=True, metavar="URI",
                   help="input dataset (only read): parquet:///folder of .parquet files, lance:///dataset.lance or "
                        "lancedb:///db?table=NAME (one partition per Lance fragment)")
    p.add_argument("--to", dest="target", type=PATH, required=True, metavar="URI",
                   help="output: parquet:///folder (one file per input partition) or a Lance dataset, "
                        "lance:///out.lance or lancedb:///db?table=NAME (committed once every partition is done); "
                        "new, or an unfinished earlier run to resume")
    p.add_argument("--id-column", type=NON_BLANK, help="id column (default: ?id= on --from, else id)")
    p.add_argument("--vector-column", type=NON_BLANK, help="fixed-size-list vector column (default: ?vector= on --from, else vector)")
    p.add_argument("--num-cpus", type=number(int, low=1, high=4096), metavar="N", help="CPUs of the local Ray started for the job")
    add_engine_flags(p)
    p.set_defaults(handler=cmd_transform)

    p = sub.add_parser("embed-dataset", help="embed a partitioned Parquet dataset of items with a model (a partial "
                                             "backfill in the planner's order with --order); --engine ray uses "
                                             "an actor pool")
    add_common(p, workspace=False)
    p.add_argument("--model", type=PATH, required=True, help="model file or folder (as for 'model add')")
    p.add_argument("--input-shape", type=NON_BLANK, help="the model's input shape without batch, e.g. 1,28,28 (as for 'model add', "
                   "when it cannot be inferred)")
    p.add_argument("--from", dest="source", type=PATH, required=True, metavar="URI",
                   help="items, parquet:///folder with an id column and an input column (floats or text)")
    p.add_argument("--to", dest="target", type=PATH, required=True, metavar="URI",
                   help="output folder, parquet:///folder of (id, vector) chunk files (resumable)")
    p.add_argument("--order", type=PATH, metavar="FILE.npy", help="ids to embed, in this order (e.g. the planner's)")
    p.add_argument("--id-column", type=NON_BLANK, default="id", help="id column (default id)")
    p.add_argument("--input-column", type=NON_BLANK, default="input",
                   help="input column: a fixed-size list of floats (the model input, flattened) or text (default input)")
    p.add_argument("--role", choices=("document", "query"), default="document",
                   help="a text model's prompt to embed with: its document prompt (gallery items, the default) or "
                        "its query prompt")
    p.add_argument("--chunk", type=number(int, low=1, high=10**8), default=4096, help="items per task and output file (default 4096)")
    p.add_argument("--batch", type=number(int, low=1, high=10**6), default=256, help="items per model batch (default 256)")
    p.add_argument("--actors", type=number(int, low=1, high=100_000), help="actors in the Ray pool (default: one per CPU)")
    p.add_argument("--num-gpus", type=number(float, low=0, high=64), default=0.0, help="GPUs per actor (default 0: CPU actors)")
    add_engine_flags(p)
    p.set_defaults(handler=cmd_embed_dataset)


def cmd_transform(args: argparse.Namespace) -> Result:
    from embridge.core.scale.gallery_transform import transform_gallery

    r = transform_gallery(args.bundle, args.source, args.target, engine=args.engine, ray_address=args.ray_address,
                          num_cpus=args.num_cpus, id_col=args.id_column, vec_col=args.vector_column,
                          on_progress=StderrProgress("transform"))
    text = (f"transformed {r.rows} rows in {r.written} partition{'' if r.written == 1 else 's'} on {r.engine} ({r.rows_per_s:,.0f} rows/s, "
            f"runtime {', '.join(r.runtimes) or '-'}); {r.skipped} partitions were already done; output: {r.target}"
            + (f" (Lance version {r.dataset_version})" if r.dataset_version is not None else "")
            + (f"; redone or dropped because their source file changed or went away: {', '.join(r.replaced)}"
               if r.replaced else "")
            + (f"\n{r.note}" if r.note else ""))
    return r.to_dict(), text


def cmd_embed_dataset(args: argparse.Namespace) -> Result:
    import numpy as np

    from embridge.core.errors import InputError, first_line
    from embridge.core.paths import check_regular
    from embridge.core.scale.backfill_embed import embed_dataset

    order = None
    if args.order:
        check_regular(args.order, "id order", folders=False)  # a FIFO would block the read forever
        try:
            order = np.load(args.order, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:  # EOFError: an empty file
            raise InputError(args.order, "cannot read the id order: expected a .npy array of ids "
                             f"({first_line(exc)})") from exc
    model: Any = args.model
    if args.input_shape:
        from embridge.core.models.adding import parse_input_shape

        model = _model_at_shape(args.model, parse_input_shape(args.input_shape))
    r = embed_dataset(model, args.source, args.target, engine=args.engine, order=order, chunk=args.chunk,
                      batch_size=args.batch, actors=args.actors, num_gpus=args.num_gpus,
                      ray_address=args.ray_address, id_col=args.id_column, input_col=args.input_column,
                      on_progress=StderrProgress("embed"), role=args.role)
    text = (f"embedded {r.items} items in {r.written} chunks on {r.engine} ({r.items_per_s:,.0f} items/s); "
            f"{r.skipped} chunks were already done; output: {r.target}")
    if r.zero_vectors:  # as `embed` says it, beside its result
        from embridge.core.l2 import zero_vectors_sentence

        text += f"; {zero_vectors_sentence(r.zero_vectors, r.zero_vector_example)}"
    return r.to_dict(), text


def _model_at_shape(path: str, shape: tuple[int, ...]) -> Any:
    """The model as ``embed_dataset`` takes it with ``--input-shape``: the file itself when it already implies
    that shape (stating the shape or leaving it out is then one job, which a rerun resumes), else its
    description at the shape given, which every worker loads."""
    from embridge.core.errors import EmbridgeError
    from embridge.core.models import describe_model

    try:
        implied = describe_model(path).input_shape
    except EmbridgeError:  # the file does not say its shape: what --input-shape is for
        implied = None
    if implied and tuple(implied) == tuple(shape):
        return path
    return describe_model(path, input_shape=shape).to_dict()
