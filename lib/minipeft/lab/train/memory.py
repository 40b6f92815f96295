"""Peak resident memory of this process, sampled in a background thread while a block runs."""

from __future__ import annotations

import os
import threading

import psutil


class PeakRSS:
    """Samples this process's resident memory in a background thread; ``peak`` is the highest value seen (MB)."""

    def __init__(self, interval: float = 0.02):
        self.interval, self.peak, self._stop = interval, 0.0, threading.Event()
        self._proc = psutil.Process(os.getpid())

    def _sample(self):
        self.peak = max(self.peak, self._proc.memory_info().rss / 2**20)

    def _run(self):
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self):
        self._sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()
