"""Collect ``bench_*.py`` here (so a plain ``pytest`` / ``pytest tests`` never runs them).

Run with ``pytest benchmarks/ --benchmark-only``; a throughput summary (explanations per
second, batched submission vs one-input-at-a-time library use) is printed at the end.
"""

from __future__ import annotations

import pytest

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
    tr.write_line(f"{'method':<22}{'batched':>12}{'one-at-a-time':>16}{'speed-up':>10}   (n batched / n naive)")
    for m in methods:
        b = THROUGHPUT.get((m, "batched"), {})
        n = THROUGHPUT.get((m, "naive"), {})
        rb, rn = b.get("explanations_per_second"), n.get("explanations_per_second")
        up = f"{rb / rn:>9.1f}x" if rb and rn else f"{'-':>10}"
        tr.write_line(f"{m:<22}{rb or float('nan'):>12.2f}{rn or float('nan'):>16.2f}{up}   "
                      f"({b.get('n_examples', '-')} / {n.get('n_examples', '-')})")
