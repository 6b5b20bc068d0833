"""Overlapping a stream's production with its consumption: one bounded background producer.

A store migration reads a batch, transforms it and writes it. Reading and transforming the next
batch while the store writes the current one keeps both busy (numpy, onnxruntime, Arrow and the
store clients release the GIL in their heavy parts). :class:`Prefetch` runs an iterator in one
thread; the producer starts an item only while fewer than ``depth`` items are made and not yet
taken, so at most ``depth + 1`` items exist at once (for ``depth=1``: the one being consumed and
the next, being made or waiting). Everything with side effects that must happen in order (writes,
checkpoints) stays with the consumer: the producer only reads, so an interrupted run has nothing of
its read-ahead to undo.
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
        self._queue: queue.Queue[tuple[bool, object]] = queue.Queue()
        self._slots = threading.Semaphore(depth)  # items made (or being made) and not yet taken
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(make,), name=name, daemon=True)
        self._thread.start()

    def _run(self, make: Callable[[], Iterator[T]]) -> None:
        try:
            items = iter(make())
            try:
                while self._slot():
                    try:
                        item = next(items)
                    except StopIteration:
                        break
                    self._queue.put((True, item))
                    del item
                else:
                    return  # the consumer closed the stream
            finally:
                close = getattr(items, "close", None)
                if close is not None:
                    close()
            self._queue.put((True, _DONE))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            self._queue.put((False, exc))

    def _slot(self) -> bool:
        """Wait until another item may be made; False once the consumer has closed the stream."""
        while not self._stop.is_set():
            if self._slots.acquire(timeout=_POLL_S):
                return True
        return False

    def __iter__(self) -> Iterator[T]:
        while True:
            ok, item = self._queue.get()
            self._slots.release()  # taken: the producer may start the next one while this is used
            if not ok:
                assert isinstance(item, BaseException)
                raise item
            if item is _DONE:
                return
            yield item  # type: ignore[misc]
            del item

    def close(self) -> None:
        """Stop the producer after the item it is making, drop what it read ahead, and join it."""
        self._stop.set()
        self._thread.join()
        while not self._queue.empty():
            self._queue.get_nowait()

    def __enter__(self) -> Prefetch[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
