"""Desktop measurements in a fresh process (``QT_QPA_PLATFORM=offscreen``), one mode per run.

* ``launch``: what ``embridge.app.launch:main`` does (QApplication, ``build_main_window``, show, start), timed
  from the parent's spawn timestamp to the main window's first paint; then quits.
* ``bare``: the floor of ``launch``: Python + PySide6 + an empty QMainWindow to its first paint.
* ``import``: the floor of import stalls: a plain thread imports ``--modules`` in turn while the
  main thread ticks every 5 ms (CPython holds the GIL while it loads an extension module).
* ``stall``: the main window with its job manager; a 5 ms QTimer in the GUI thread records the
  gaps between its ticks: while the start-up jobs detect the device and import torch, faiss,
  matplotlib and the core in the background (:mod:`embridge.app.preload`), then idle (the floor), then
  while app workers run a training job (``fit_adapter``) and a report job (``embridge.core.evaluation.search``
  + top-1) at the same time, twice: the first ("cold") round is the first use of each library
  (lazy initialisation inside torch and faiss), the second is the steady state.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication, QMainWindow

from bench.common import emit


class FirstPaint(QObject):
    """Calls ``done`` once, at the watched widget's first paint event."""

    def __init__(self, done: Any) -> None:
        super().__init__()
        self.done = done
        self.fired = False

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        if not self.fired and event.type() == QEvent.Type.Paint:
            self.fired = True
            self.done()
        return False


def launch(spawned: float, workspace: str, bare: bool) -> None:
    if bare:
        app = QApplication([])
        window = QMainWindow()
    else:
        from embridge.app.launch import application, build_main_window

        app = application()
        window = build_main_window(workspace or None)
    seen: dict[str, Any] = {}

    def shown() -> None:
        seen.update(visible_at=time.time(), visible=window.isVisible())
        QTimer.singleShot(0, app.quit)

    watcher = FirstPaint(shown)
    window.installEventFilter(watcher)
    window.show()
    if not bare:
        window.start()
    QTimer.singleShot(20_000, app.quit)
    app.exec()
    if not bare:
        window.ctx.jobs.shutdown(10.0)
    emit({"launch_s": seen["visible_at"] - spawned if seen else None, "visible": seen.get("visible", False)})


def stall_jobs(n_train: int, n_gallery: int, n_queries: int, dim: int, epochs: int) -> tuple[Any, Any]:
    """A training job and a report job as plain ``fn(on_progress, should_stop)`` functions."""

    def train(on_progress: Any, should_stop: Any) -> dict[str, Any]:
        from embridge.core.synthetic import class_structured_pair
        from embridge.core.train import PairData, fit_adapter

        pair = class_structured_pair(n_train + 1_000, 50, dim, dim, 25, seed=0)
        data = PairData(pair.old[:n_train], pair.new[:n_train], pair.old[n_train:], pair.new[n_train:])
        result = fit_adapter("mlp", data, {"epochs": epochs, "device": "cpu"}, on_progress, should_stop)
        return {"status": result.status, "seconds": result.duration_s}

    def report(on_progress: Any, should_stop: Any) -> dict[str, Any]:
        import numpy as np

        from embridge.core.evaluation.search import SearchConfig, search
        from embridge.core.l2 import l2_normalize

        rng = np.random.default_rng(1)
        gallery = l2_normalize(rng.standard_normal((n_gallery, dim)))
        queries = l2_normalize(gallery[:n_queries] + 0.1 * rng.standard_normal((n_queries, dim)))
        start = time.perf_counter()
        idx, _, _ = search(queries, gallery, 10, config=SearchConfig(method="exact", query_block=512),
                           on_progress=on_progress, should_stop=should_stop)
        top1 = float((idx[:, 0] == np.arange(n_queries)).mean())
        return {"top1": top1, "seconds": time.perf_counter() - start}

    return train, report


def stall(idle_s: float, n_train: int, n_gallery: int, n_queries: int, dim: int, epochs: int) -> None:
    from embridge.app.launch import application, build_main_window

    app = application()
    window = build_main_window(None)
    window.show()
    gaps: list[tuple[float, float]] = []  # (time, gap)
    last = [time.perf_counter()]

    marks: dict[str, float] = {}

    def tick() -> None:
        now = time.perf_counter()
        gaps.append((now, now - last[0]))
        last[0] = now
        # start-up stalls count from the first tick: the first event-loop turn after show() lays
        # out and paints the window, which is launch time (measured on its own), not a stall
        marks.setdefault("shown", now)

    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(tick)
    timer.start()
    outcomes: list[dict[str, Any]] = [{}, {}]
    train, report = stall_jobs(n_train, n_gallery, n_queries, dim, epochs)

    def start_round(r: int) -> None:
        marks[f"start{r}"] = time.perf_counter()

        def record(name: str) -> Any:
            def finished(result: Any) -> None:
                outcomes[r][name] = result
                if len(outcomes[r]) == 2:
                    marks[f"end{r}"] = time.perf_counter()
                    if r == 0:
                        QTimer.singleShot(int(idle_s * 1000), lambda: start_round(1))
                    else:
                        QTimer.singleShot(50, app.quit)
            return finished

        window.ctx.run_plain(f"Train mlp (benchmark {r + 1})", train, record("train"))
        window.ctx.run_plain(f"Report search (benchmark {r + 1})", report, record("report"))

    def warmed_up() -> None:
        marks["detected"] = time.perf_counter()
        QTimer.singleShot(int(idle_s * 1000), lambda: start_round(0))

    window.ctx.libraries_loaded.connect(warmed_up)
    window.start()  # as app.launch does: detect the device, then import the libraries jobs need
    QTimer.singleShot(600_000, app.quit)
    app.exec()
    timer.stop()
    window.ctx.jobs.shutdown(30.0)
    inf = float("inf")
    m = {k: marks.get(k, inf) for k in ("shown", "detected", "start0", "end0", "start1", "end1")}

    def worst(a: float, b: float) -> float:
        return 1000 * max((g for t, g in gaps if a < t <= b), default=0.0)

    busy = sorted(g for t, g in gaps if m["start1"] < t <= m["end1"])
    emit({"startup_max_gap_ms": worst(m["shown"], m["detected"]), "startup_s": m["detected"] - m["shown"],
          "idle_max_gap_ms": worst(m["detected"], m["start0"]),
          "cold_max_gap_ms": worst(m["start0"], m["end0"]), "cold_s": m["end0"] - m["start0"],
          "busy_max_gap_ms": worst(m["start1"], m["end1"]), "busy_s": m["end1"] - m["start1"],
          "busy_p99_gap_ms": 1000 * busy[int(0.99 * (len(busy) - 1))] if busy else None,
          "ticks": len(busy), "outcomes": outcomes})


def import_floor(modules: list[str]) -> None:
    """Floor of the import stalls: a plain thread imports the modules one after the other while
    this thread ticks every 5 ms; the longest gap during each module's import."""
    import threading

    spans: dict[str, tuple[float, float]] = {}

    def work() -> None:
        for name in modules:
            start = time.perf_counter()
            __import__(name)
            spans[name] = (start, time.perf_counter())

    worker = threading.Thread(target=work)
    gaps: list[tuple[float, float]] = []
    last = time.perf_counter()
    worker.start()
    while worker.is_alive():
        time.sleep(0.005)
        now = time.perf_counter()
        gaps.append((now, now - last))
        last = now
    emit({name: {"max_gap_ms": 1000 * max((g for t, g in gaps if a < t <= b + 0.005), default=0.0),
                 "import_s": b - a} for name, (a, b) in spans.items()})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("mode", choices=("launch", "bare", "stall", "import"))
    p.add_argument("--modules", default="torch,faiss")
    p.add_argument("--spawned", type=float, default=0.0)
    p.add_argument("--workspace", default="")
    p.add_argument("--idle-s", type=float, default=1.0)
    p.add_argument("--train-pairs", type=int, default=20_000)
    p.add_argument("--gallery", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=10_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--epochs", type=int, default=3)
    a = p.parse_args()
    if a.mode == "import":
        import_floor(a.modules.split(","))
    elif a.mode == "stall":
        stall(a.idle_s, a.train_pairs, a.gallery, a.queries, a.dim, a.epochs)
    else:
        launch(a.spawned, a.workspace, a.mode == "bare")


if __name__ == "__main__":
    main()
