"""Collect ``bench_*.py`` here (so a plain ``pytest`` / ``pytest tests`` never runs them).

Run with ``pytest benchmarks/ --benchmark-only``; a throughput summary (explanations per
second, batched submission vs one-input-at-a-time library use) is printed at the end.
"""

from __future__ import annotations

import os

import pytest
import torch

#: single-threaded by default: on a shared 2-core machine extra torch threads mostly measure the
#: neighbours (set ATTRIBOARD_BENCH_THREADS to change it)
from harness.core.threads import set_threads  # noqa: E402 - torch's pool as asked, numpy's BLAS at 1 as in a run

set_threads(int(os.environ.get("ATTRIBOARD_BENCH_THREADS", "1")))

THROUGHPUT: dict[tuple[str, str], dict] = {}


@pytest.fixture(scope="session")
def throughput() -> dict[tuple[str, str], dict]:
    """(method, "batched" | "naive") -> the extra_info of that benchmark; summarised at the end."""
    return THROUGHPUT


def pytest_collect_file(file_path, parent):
    if file_path.suffix == ".py" and file_path.name.startswith("bench_"):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_terminal_summary(terminalreporter):
    if not THROUGHPUT:
        return
    tr = terminalreporter
    tr.section("explainer throughput (explanations / second)")
    methods = sorted({m for m, _ in THROUGHPUT})
    tr.write_line(f"torch threads: {torch.get_num_threads()}; wall clock (best of the rounds) and process CPU time")
    tr.write_line(f"{'method':<24}{'batched':>10}{'one-at-a-time':>15}{'speed-up':>10}{'CPU speed-up':>14}"
                  f"{'fwd/ex b|n':>16}{'mlm/ex b|n':>14}   (n batched / n naive)")
    for m in methods:
        b = THROUGHPUT.get((m, "batched"), {})
        n = THROUGHPUT.get((m, "naive"), {})
        rb, rn = b.get("explanations_per_second"), n.get("explanations_per_second")
        cb, cn = b.get("cpu_explanations_per_second"), n.get("cpu_explanations_per_second")
        up = f"{rb / rn:>9.1f}x" if rb and rn else f"{'-':>10}"
        cup = f"{cb / cn:>13.1f}x" if cb and cn else f"{'-':>14}"
        fw = f"{b.get('model_passes_per_explanation', float('nan')):.0f}|{n.get('model_passes_per_explanation', float('nan')):.0f}"
        ml = f"{b.get('mlm_passes_per_explanation', float('nan')):.0f}|{n.get('mlm_passes_per_explanation', float('nan')):.0f}"
        tr.write_line(f"{m:<24}{rb or float('nan'):>10.2f}{rn or float('nan'):>15.2f}{up}{cup}{fw:>16}{ml:>14}   "
                      f"({b.get('n_examples', '-')} / {n.get('n_examples', '-')})")
