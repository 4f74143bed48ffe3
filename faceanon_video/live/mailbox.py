"""A one-slot hand-over between two threads that never makes the producer wait.

Live video must not build latency: when the consumer is slower than the producer, the frame that has
been waiting is worth less than the one just captured, so it is replaced (drop-oldest) and counted.
A ``queue.Queue(maxsize=1)`` cannot do this atomically (get-then-put races with the consumer), and
``collections.deque(maxlen=1)`` cannot count what it discards or wake a waiting consumer, hence this
small class.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class Mailbox(Generic[T]):
    """Holds at most one item; ``put`` replaces an unread one and counts it in ``dropped``.

    >>> box = Mailbox()
    >>> box.put(1); box.put(2)
    >>> box.get(timeout_s=0), box.dropped
    (2, 1)
    >>> box.get(timeout_s=0) is None
    True
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._full = False
        self._closed = False
        self.dropped = 0
        self.delivered = 0

    def put(self, item: T) -> None:
        with self._cond:
            if self._full:
                self.dropped += 1
            self._item, self._full = item, True
            self._cond.notify()

    def get(self, timeout_s: float | None) -> T | None:
        """The newest item, or None after ``timeout_s`` or once closed and empty."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._full or self._closed, timeout=timeout_s) or not self._full:
                return None
            item, self._item, self._full = self._item, None, False
            self.delivered += 1
            return item

    def close(self) -> None:
        """Wake the consumer; an unread item can still be taken (so the last frame is not lost)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
