"""slimrt.fifo_lock: threads get the lock in the order they asked for it."""

from __future__ import annotations

import threading
import time

from slimrt.fifo_lock import FifoLock


def wait_until_queued(lock: FifoLock, count: int) -> None:
    """Until `count` threads hold or wait for the lock (it has no public view of its queue)."""
    deadline = time.monotonic() + 10
    while len(lock._queue) < count:
        assert time.monotonic() < deadline, "a thread never reached the lock"
        time.sleep(0.001)


def test_waiters_get_the_lock_in_the_order_they_asked() -> None:
    lock = FifoLock()
    order: list[int] = []

    def take(i: int) -> None:
        with lock:
            order.append(i)

    lock.acquire()
    threads = [threading.Thread(target=take, args=(i,)) for i in range(4)]
    for i, thread in enumerate(threads):
        thread.start()
        wait_until_queued(lock, i + 2)
    lock.release()
    for thread in threads:
        thread.join(10)
    assert order == [0, 1, 2, 3]


def test_a_holder_that_asks_again_at_once_queues_behind_the_waiters() -> None:
    # What a plain threading.Lock gets wrong: the releasing thread usually takes it straight
    # back, and a waiter can wait behind any number of such turns.
    lock = FifoLock()
    order: list[str] = []

    def waiter() -> None:
        with lock:
            order.append("waiter")

    lock.acquire()
    thread = threading.Thread(target=waiter)
    thread.start()
    wait_until_queued(lock, 2)
    lock.release()
    with lock:
        order.append("holder")
    thread.join(10)
    assert order == ["waiter", "holder"]
