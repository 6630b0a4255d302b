"""Group commit: the sends waiting in one process are written together, as one batch.

A send joins its process's queue. If no batch is being written, the sender's own thread
writes everything queued (up to a bound) as one batch, with its own database connection,
and hands every waiting caller its own result. Otherwise the sender waits; when the batch
before it is done, the oldest waiting thread writes the next one. No one waits for a
timer: a lone send is written at once, and under load the sends that arrive while one
batch is being written form the next, as PostgreSQL's group commit does for WAL flushes.

Every request thread of a server process (ASGI runs each sync view in a thread of its own,
a threaded WSGI worker has a pool) shares one queue, so the batch a busy process writes
grows with its load and the per-gift cost of a transaction shrinks with it.
"""

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class _Slot(Generic[Item, Result]):
    """One caller's place in the queue: what it sent, and how it learns the outcome."""

    __slots__ = ("item", "result", "error", "lead", "ready")

    def __init__(self, item: Item):
        self.item = item
        self.result: Result | None = None
        self.error: BaseException | None = None
        self.lead = False  # this caller's thread is to write the next batch
        self.ready = threading.Event()


class GroupCommit(Generic[Item, Result]):
    """Runs `write(items) -> results` (one result per item, in order) over what callers queue meanwhile."""

    def __init__(self, write: Callable[[list[Item]], list[Result]], *, max_batch: Callable[[], int]):
        self._write = write
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Slot[Item, Result]] = []
        self._writing = False

    @property
    def waiting(self) -> int:
        """How many sends are queued behind the batch being written."""
        with self._lock:
            return len(self._queue)

    def submit(self, item: Item) -> Result:
        """Write `item` with whatever else is queued, and return its own result."""
        slot: _Slot[Item, Result] = _Slot(item)
        with self._lock:
            self._queue.append(slot)
            if not self._writing:
                self._writing = slot.lead = True
        if not slot.lead:
            slot.ready.wait()
        if slot.lead:
            # The queue is first in, first out and this slot is at its head: the batch holds it.
            self._write_next_batch()
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    def _write_next_batch(self) -> None:
        with self._lock:
            size = max(1, self._max_batch())
            batch, self._queue[:size] = self._queue[:size], []
        try:
            results = self._write([slot.item for slot in batch])
            for slot, result in zip(batch, results, strict=True):
                slot.result = result
        except BaseException as error:  # every caller of the batch must hear of it, or it waits forever
            for slot in batch:
                slot.error = error
        finally:
            with self._lock:
                if self._queue:
                    self._queue[0].lead = True
                    self._queue[0].ready.set()
                else:
                    self._writing = False
            for slot in batch:
                slot.lead = False
                slot.ready.set()
