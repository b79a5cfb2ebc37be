"""Progress of a long build step: a line when it starts, one every `interval` seconds, one when done."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Progress:
    """`with Progress("kubelet", log): ...` logs "kubelet: building", "kubelet: still building (30s)"…"""

    def __init__(self, label: str, log: Callable[[str], None], interval: float = 30.0,
                 announce_done: bool = True) -> None:
        self.label, self.log, self.interval, self.announce_done = label, log, interval, announce_done
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.log(f"{self.label}: still building ({self.elapsed():.0f}s)")

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def __enter__(self) -> "Progress":
        self.log(f"{self.label}: building")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if exc[0] is None and self.announce_done:
            self.log(f"{self.label}: done in {self.elapsed():.0f}s")
