"""Peak memory of attaching a vector file to existing items: ``python -m bench.attach_memory``.

Builds a workspace of N gallery items and an N x D float32 ``.npz`` (stored and compressed), then
runs ``embridge import --format vectors --model NAME`` on it in a fresh process per case and reads
that process's peak resident memory: ``VmHWM`` (all resident pages, including the pages of
memory-mapped files, which the kernel can drop at any time) and the peak of anonymous memory
(``RssAnon``, sampled every 5 ms: what the process really holds). The ``load-whole`` case loads the
file with ``np.load``, as imports did before they streamed; ``baseline`` only imports and opens
the workspace. Prints one JSON object; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _anon_mb() -> float:
    return _status_mb("RssAnon")


def _child(case: str, ws: str, path: str) -> None:
    """Runs in a fresh process: one attach (or the whole-file load), then reports peak memory."""
    import threading

    from embridge.core.importers import import_items
    from embridge.core.store import Workspace

    peak = [_anon_mb()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            peak[0] = max(peak[0], _anon_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    if case == "baseline":
        Workspace.open(ws).close()
    elif case == "load-whole":
        with np.load(path) as data:
            vectors = data["vectors"]
            keys = data["ids"]
        assert len(keys) == len(vectors)
    else:
        with Workspace.open(ws) as workspace:
            out = import_items(workspace, path, fmt="vectors", model="new")
        assert out["attached"] > 0
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    peak[0] = max(peak[0], _anon_mb())
    print(json.dumps({"case": case, "peak_rss_mb": round(_status_mb("VmHWM"), 1),
                      "peak_anon_mb": round(peak[0], 1), "seconds": round(seconds, 2)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=384)
    args = parser.parse_args()
    from embridge.core.store import Workspace

    rng = np.random.default_rng(0)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        keys = np.array([f"doc-{i}" for i in range(args.rows)])
        for save, label in ((np.savez, "stored"), (np.savez_compressed, "compressed")):
            root = Path(tmp) / label
            with Workspace.create(root / "ws") as ws:
                ws.add_items([{"key": str(k), "split": "gallery"} for k in keys])
                ws.add_model("new", "new", {"kind": "vectors", "dim": args.dim}, None)
            path = root / "new.npz"
            with open(path, "wb") as fh:
                save(fh, ids=keys, vectors=rng.standard_normal((args.rows, args.dim), dtype=np.float32))
            cases = ["attach-" + label] + (["baseline", "load-whole"] if label == "stored" else [])
            for case in cases:
                proc = subprocess.run([sys.executable, "-m", "bench.attach_memory", "--child", case,
                                       str(root / "ws"), str(path)], capture_output=True, text=True, check=True)
                results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    matrix_mb = args.rows * args.dim * 4 / 2**20
    print(json.dumps({"rows": args.rows, "dim": args.dim, "matrix_mb": round(matrix_mb, 1), "results": results},
                     indent=1))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        _child(*sys.argv[2:])
    else:
        main()
