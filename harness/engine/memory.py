"""Peak memory during a block: sampled process RSS (and CUDA peak allocation on GPU)."""

from __future__ import annotations

import threading


class PeakMemory:
    """Context manager sampling this process's RSS every ``interval`` seconds."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.peak_rss_mb = 0.0
        self.peak_cuda_mb: float | None = None
        self.cpu_s = 0.0
        """CPU seconds of this process inside the block."""
        self._stop = threading.Event()

    def _sample(self) -> None:
        import psutil

        proc = psutil.Process()
        while not self._stop.is_set():
            self.peak_rss_mb = max(self.peak_rss_mb, proc.memory_info().rss / 2**20)
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakMemory":
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        import time

        self._cpu0 = time.process_time()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        import psutil
        import torch

        import time

        self.cpu_s = time.process_time() - self._cpu0
        self._stop.set()
        self._thread.join()
        self.peak_rss_mb = max(self.peak_rss_mb, psutil.Process().memory_info().rss / 2**20)
        if torch.cuda.is_available():
            self.peak_cuda_mb = torch.cuda.max_memory_allocated() / 2**20
