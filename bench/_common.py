"""Shared helpers for the benchmark scripts: timing, peak memory, BLAS pinning."""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import threading
import time

import numpy as np

__all__ = ["Timer", "peak_rss_mb", "MemorySampler", "machine", "pinned"]


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class MemorySampler:
    """Samples the current RSS in a thread to report the peak reached inside a block (MB)."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.peak = 0.0

    @staticmethod
    def _rss() -> float:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def __enter__(self):
        self.base = self._rss()
        self.peak = self.base
        self._stop = threading.Event()

        def run():
            while not self._stop.is_set():
                self.peak = max(self.peak, self._rss())
                time.sleep(self.interval)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def increase(self) -> float:
        """Peak minus the RSS at entry (MB)."""
        return self.peak - self.base


class Timer:
    """``with Timer() as t: ...; t.seconds``, and ``t.cpu_seconds`` (this process's CPU time)."""

    def __enter__(self):
        self.start = time.perf_counter()
        self.cpu_start = time.process_time()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        self.cpu_seconds = time.process_time() - self.cpu_start


def machine() -> str:
    """One line describing the machine."""
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}"


@contextlib.contextmanager
def pinned(n_threads: int):
    """Pin BLAS/OpenMP threads inside the block."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n_threads):
        yield
