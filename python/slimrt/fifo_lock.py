"""A lock that threads get in the order they asked for it.

    lock = FifoLock()
    with lock:
        ...

slimrt.LLM's callers take turns stepping one shared engine. With a plain threading.Lock the
thread that just released it usually takes it straight back, so a thread whose requests another
thread's steps have finished could wait behind any number of further steps before it sees that
and returns. In arrival order, a waiter gets the lock after each thread ahead of it held it
once. Waiting blocks on a condition variable: nobody spins.
"""

from __future__ import annotations

import threading
from collections import deque

__all__ = ["FifoLock"]


class FifoLock:
    """Not reentrant; release() must come from the thread that acquired it."""

    def __init__(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._queue: deque[object] = deque()  # the holder first, then the waiters in order

    def acquire(self) -> None:
        ticket = object()
        with self._changed:
            self._queue.append(ticket)
            try:
                self._changed.wait_for(lambda: self._queue[0] is ticket)
            except BaseException:  # interrupted while waiting: give up the place in the queue
                self._queue.remove(ticket)
                self._changed.notify_all()
                raise

    def release(self) -> None:
        with self._changed:
            self._queue.popleft()
            self._changed.notify_all()

    def __enter__(self) -> FifoLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
