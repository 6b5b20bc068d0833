"""Data for the scale-out tests: partitioned Parquet and Lance galleries and a way to kill a busy Ray worker."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np


def write_items(folder: Path, inputs: np.ndarray, parts: int) -> None:
    """An embed-dataset input: (id, input) rows in ``parts`` Parquet files, ids from 1000."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    for n, rows in enumerate(np.array_split(np.arange(len(inputs)), parts)):
        flat = pa.array(inputs[rows].ravel())
        pq.write_table(pa.table({"id": pa.array(rows + 1000, pa.int64()),
                                 "input": pa.FixedSizeListArray.from_arrays(flat, inputs.shape[1])}),
                       folder / f"p{n}.parquet")


def mlp_items(folder: Path, n: int, parts: int = 3) -> dict:
    """A tiny seeded MLP embedder (8 inputs -> 6) saved as ``m.pt`` and ``n`` random items for it in
    ``parts`` Parquet files under ``items`` (ids 1000 on): the input of an embed-dataset run."""
    import torch

    from embridge.core.models.builtin import build_model, save_checkpoint

    torch.manual_seed(0)
    path = folder / "m.pt"
    save_checkpoint(path, build_model("mlp", {"input_dim": 8, "out_dim": 6})[0], "mlp", {"input_dim": 8, "out_dim": 6})
    inputs = np.random.default_rng(0).standard_normal((n, 8)).astype(np.float32)
    write_items(folder / "items", inputs, parts)
    return {"model": path, "items": folder / "items", "inputs": inputs}


def write_partitions(folder: Path, vectors: np.ndarray, parts: int, first_id: int = 0) -> list[Path]:
    """``parts`` Parquet files of (id, vector, label) rows, in id order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i, rows in enumerate(np.array_split(np.arange(len(vectors)), parts)):
        flat = pa.array(vectors[rows].astype(np.float32).ravel())
        table = pa.table({"id": pa.array(rows + first_id, pa.int64()),
                          "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]),
                          "label": pa.array([f"l{r % 5}" for r in rows])})
        files.append(folder / f"part-{i:03d}.parquet")
        pq.write_table(table, files[-1])
    return files


def write_lance(db: Path, table: str, vectors: np.ndarray, fragments: int, append: bool = False) -> Path:
    """A LanceDB table of (id, vector, label) rows written in ``fragments`` appends (one fragment each)."""
    import lancedb
    import pyarrow as pa

    conn = lancedb.connect(str(db))
    first = 0
    if append:
        tbl = conn.open_table(table)
        first = int(tbl.count_rows())
    for i, rows in enumerate(np.array_split(np.arange(len(vectors)), fragments)):
        flat = pa.array(vectors[rows].astype(np.float32).ravel())
        data = pa.table({"id": pa.array(rows + first, pa.int64()),
                         "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]),
                         "label": pa.array([f"l{r % 5}" for r in rows])})
        if i == 0 and not append:
            tbl = conn.create_table(table, data)
        else:
            tbl.add(data)
    return db / f"{table}.lance"


def read_partitions(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray, list]]:
    """Each output file by name: ids, vectors, labels."""
    import pyarrow.parquet as pq

    out = {}
    for file in sorted(folder.glob("*.parquet")):
        t = pq.read_table(file)
        vec = t.column("vector").combine_chunks()
        vectors = vec.flatten().to_numpy().reshape(len(vec), vec.type.list_size)
        out[file.name] = (t.column("id").to_numpy(), vectors, t.column("label").to_pylist())
    return out


def worker_pids(task_name: str) -> list[int]:
    """Processes whose title says they are running Ray task ``task_name`` right now."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                title = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if title.startswith(f"ray::{task_name}"):
            pids.append(int(entry))
    return pids


class WorkerKiller(threading.Thread):
    """Kills the first worker seen running ``task_name`` (SIGKILL), once; records its pid."""

    def __init__(self, task_name: str, timeout: float = 60.0) -> None:
        super().__init__(daemon=True)
        self.task_name, self.timeout, self.killed = task_name, timeout, None
        self.stop = threading.Event()

    def run(self) -> None:
        end = time.monotonic() + self.timeout
        while not self.stop.is_set() and time.monotonic() < end:
            pids = worker_pids(self.task_name)
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                self.killed = pids[0]
                return
            time.sleep(0.005)
