"""Overlapping a stream's production with its consumption: one bounded background producer.

A store migration reads a batch, transforms it and writes it. Reading and transforming the next
batch while the store writes the current one keeps both busy (numpy, onnxruntime, Arrow and the
store clients release the GIL in their heavy parts). :class:`Prefetch` runs an iterator in one
thread at most ``depth`` items ahead of the consumer, so memory stays bounded by ``depth + 2``
items (one queued, one being made, one being consumed for ``depth=1``). Everything with side
effects that must happen in order (writes, checkpoints) stays with the consumer: the producer
only reads, so an interrupted run has nothing of its read-ahead to undo.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
_DONE = object()
_POLL_S = 0.05


class Prefetch(Generic[T]):
    """Iterate ``make()`` in a background thread; use as a context manager so the thread always ends.

    ``make`` is called in the producer thread, so a generator it returns is created, advanced and
    closed there alone. An exception in the producer is raised in the consumer at the point the
    failed item would have arrived.
    """

    def __init__(self, make: Callable[[], Iterator[T]], depth: int = 1, name: str = "embridge-prefetch") -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self._queue: queue.Queue[tuple[bool, object]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(make,), name=name, daemon=True)
        self._thread.start()

    def _run(self, make: Callable[[], Iterator[T]]) -> None:
        try:
            items = make()
            try:
                for item in items:
                    if not self._put((True, item)):
                        return
            finally:
                close = getattr(items, "close", None)
                if close is not None:
                    close()
            self._put((True, _DONE))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            self._put((False, exc))

    def _put(self, entry: tuple[bool, object]) -> bool:
        """Queue an entry, giving up (False) once the consumer has closed the stream."""
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[T]:
        while True:
            ok, item = self._queue.get()
            if not ok:
                assert isinstance(item, BaseException)
                raise item
            if item is _DONE:
                return
            yield item  # type: ignore[misc]

    def close(self) -> None:
        """Stop the producer after the item it is making, drop what it read ahead, and join it."""
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                pass
        self._thread.join()
        while not self._queue.empty():
            self._queue.get_nowait()

    def __enter__(self) -> Prefetch[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
