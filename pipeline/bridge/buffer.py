"""What travels through the bridge, and the bounded buffer in front of each sink."""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class BridgeMessage:
    """One published message: its ZeroMQ topic split into kind and camera, the JSON untouched."""

    kind: str  # the topic's first part: det, status, evt, ... (never a fixed list)
    camera: str
    payload: bytes  # the JSON exactly as the daemon sent it

    @property
    def topic(self) -> str:
        return f"{self.kind}/{self.camera}/"


def parse_topic(topic: bytes) -> tuple[str, str] | None:
    """`kind/camera/` -> (kind, camera); None for anything else."""
    try:
        text = topic.decode("ascii")
    except UnicodeDecodeError:
        return None
    parts = text.split("/")
    if len(parts) != 3 or parts[2] or not parts[0] or not parts[1]:
        return None
    return parts[0], parts[1]


class MessageBuffer:
    """FIFO of at most `capacity` messages. put() never blocks: when full the oldest goes and is
    counted. Messages a sink took but could not deliver go back to the front (put_back)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[BridgeMessage] = deque()
        self._cond = threading.Condition()
        self.dropped = 0  # for the life of the buffer

    def put(self, msg: BridgeMessage) -> bool:
        """False when an older message had to go to make room."""
        with self._cond:
            dropped = len(self._items) >= self.capacity
            if dropped:
                self._items.popleft()
                self.dropped += 1
            self._items.append(msg)
            self._cond.notify()
            return not dropped

    def take(self, limit: int, timeout: float) -> list[BridgeMessage]:
        """Up to `limit` oldest messages; waits up to `timeout` s for the first one."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            n = min(limit, len(self._items))
            return [self._items.popleft() for _ in range(n)]

    def put_back(self, msgs: list[BridgeMessage]) -> int:
        """Return undelivered messages to the front, oldest first; beyond capacity the oldest of
        them are dropped (counted). Returns how many were dropped."""
        with self._cond:
            room = self.capacity - len(self._items)
            keep = msgs[-room:] if room > 0 else []
            lost = len(msgs) - len(keep)
            self._items.extendleft(reversed(keep))
            self.dropped += lost
            if keep:
                self._cond.notify()
            return lost

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
