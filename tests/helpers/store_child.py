"""A second process acting on a workspace, so tests can kill it or race it.

Usage: ``python store_child.py MODE WORKSPACE SIGNAL_FILE [options]``. The child writes
SIGNAL_FILE (atomically) when it reaches the point named by the mode, then waits: either until
the parent creates ``SIGNAL_FILE + '.release'`` (``hold``) or until it is killed (the others).

Modes:
- ``hold``: open a write transaction, insert one item, signal, wait for release, commit.
- ``run``: start a run record, signal its id, wait to be killed.
- ``write``: write a vector set with a resumable writer; ``--stop-at`` picks where it stops:
  ``chunk:K`` (after chunk K was written), ``state:K`` (chunk K flushed, progress not yet
  recorded), ``publish:N`` (after the N-th file of the commit was renamed into place),
  ``registered`` (after the set was registered, before the writer tidied up), ``never``
  (signal once the writer exists, then write everything unless killed first).
- ``fsize``: cap the size of any file this process may write (RLIMIT_FSIZE), try to store a
  vector set larger than the cap, print the outcome as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sys
import time
from pathlib import Path

import numpy as np

from embridge.core.store import Workspace
from embridge.core.store import vector_matrix as vectors_module


def _signal(path: Path, payload: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, path)


def _wait_for_kill(path: Path, payload: dict) -> None:
    _signal(path, payload)
    time.sleep(120)
    sys.exit(3)  # the parent should have killed us long before


def expected_vectors(rows: int, dim: int, seed: int) -> np.ndarray:
    """The data every writer of these tests stores (the parent computes the same)."""
    return np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)


def _hold(ws: Workspace, signal_file: Path) -> None:
    release = signal_file.with_name(signal_file.name + ".release")
    with ws.transaction():
        ws.db["items"].insert({"key": "held-by-child", "created": "now"})
        _signal(signal_file, {"pid": os.getpid()})
        deadline = time.monotonic() + 60
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    _signal(signal_file.with_name(signal_file.name + ".done"), {"committed": True})


def _write(ws: Workspace, signal_file: Path, args: argparse.Namespace) -> None:
    data = expected_vectors(args.rows, args.dim, args.seed)
    ids = ws.item_ids()[: args.rows]
    stop_kind, _, stop_arg = args.stop_at.partition(":")
    target = int(stop_arg) if stop_arg else -1

    if stop_kind == "publish":
        original_publish = vectors_module.publish
        calls = {"n": 0}

        def counting_publish(tmp: Path, final: Path) -> None:
            original_publish(tmp, final)
            calls["n"] += 1
            if calls["n"] == target:
                _wait_for_kill(signal_file, {"published": calls["n"]})

        vectors_module.publish = counting_publish
    if stop_kind == "registered":
        original_vector_set = Workspace.vector_set

        def vector_set_then_stop(self: Workspace, set_id: int) -> dict:
            info = original_vector_set(self, set_id)
            _wait_for_kill(signal_file, {"registered": set_id})
            return info

        Workspace.vector_set = vector_set_then_stop  # type: ignore[method-assign]

    writer = ws.vector_set_writer("m", ids, args.dim, args.dtype, name="big", resume_key=args.key)
    if stop_kind == "state":
        original_save = writer._save_state
        saves = {"n": 0}

        def save_then_maybe_stop(done: int) -> None:
            if saves["n"] == target:
                _wait_for_kill(signal_file, {"unrecorded_chunk": target, "done_rows": writer.done_rows})
            saves["n"] += 1
            original_save(done)

        writer._save_state = save_then_maybe_stop  # type: ignore[method-assign]
    started = time.monotonic()
    if stop_kind == "never":
        _signal(signal_file, {"started": True, "done_rows": writer.done_rows})
    for k, start in enumerate(range(writer.done_rows, args.rows, args.chunk)):
        writer.write(start, data[start:start + args.chunk])
        if stop_kind == "chunk" and k == target:
            _wait_for_kill(signal_file, {"chunk": k, "done_rows": writer.done_rows})
    info = writer.commit()
    _signal(signal_file.with_name(signal_file.name + ".done"),
            {"set_id": info["id"], "elapsed": time.monotonic() - started})


def _fsize(ws: Workspace, args: argparse.Namespace) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG errors instead of being killed
    resource.setrlimit(resource.RLIMIT_FSIZE, (args.fsize_limit, args.fsize_limit))
    ids = ws.item_ids()[: args.rows]
    try:
        ws.add_vector_set("m", ids, expected_vectors(args.rows, args.dim, args.seed), name="too-big")
    except Exception as exc:  # report whatever happened; the parent judges it
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
        return
    print(json.dumps({"error": None}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["hold", "run", "write", "fsize"])
    parser.add_argument("workspace")
    parser.add_argument("signal_file")
    parser.add_argument("--busy-timeout", type=float, default=10.0)
    parser.add_argument("--key", default="big")
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--chunk", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stop-at", default="never")
    parser.add_argument("--fsize-limit", type=int, default=1 << 20)
    args = parser.parse_args()
    signal_file = Path(args.signal_file)
    ws = Workspace.open(args.workspace, busy_timeout=args.busy_timeout)
    if args.mode == "hold":
        _hold(ws, signal_file)
    elif args.mode == "run":
        run_id = ws.start_run("embed", "test", {"rows": 1})
        _wait_for_kill(signal_file, {"run_id": run_id})
    elif args.mode == "write":
        _write(ws, signal_file, args)
    else:
        _fsize(ws, args)
    ws.close()


if __name__ == "__main__":
    main()
