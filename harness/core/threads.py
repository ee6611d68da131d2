"""Thread pools of a process that runs models: torch's intra-op pool, and numpy's BLAS pool.

numpy's OpenBLAS keeps its threads spinning for a while after each call. Between torch calls
(the explainers' numpy steps: LIME's ridge, SHAP's weighted least squares) those spinning threads
take the cores torch's own threads need: measured on this 2-core machine, KernelSHAP on tiny-bert (40 words)
ran at 2.37x its floor with both pools at 2 threads and 1.33x with numpy's at 1. The numpy work
of an explainer is small matrices, so one BLAS thread costs it nothing measurable.
"""
from __future__ import annotations

_BLAS_LIMIT = None


def set_threads(n: int) -> int:
    """Set torch's intra-op threads to ``n`` (at least 1) and numpy's BLAS pool to one thread;
    returns torch's thread count."""
    import torch

    torch.set_num_threads(max(1, int(n)))
    limit_blas()
    return torch.get_num_threads()


def limit_blas() -> None:
    """numpy's BLAS (OpenBLAS / MKL loaded by numpy) to one thread, once per process. torch's
    OpenMP pool is a different library and is left as set."""
    global _BLAS_LIMIT
    if _BLAS_LIMIT is None:
        from threadpoolctl import threadpool_limits

        _BLAS_LIMIT = threadpool_limits(limits=1, user_api="blas")
