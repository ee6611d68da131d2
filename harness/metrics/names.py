"""Renamed metrics: old name -> current name.

A metric is renamed when its name suggested a reference it does not equal (docs/METRICS.md,
*Names and the references they equal*).  The old names stay readable: a result record written
under an old name is read under the current one (:class:`harness.engine.records.ResultRecord`
maps ``main_metric``, ``task.main_metric``, ``scores`` and ``per_example``), and
:func:`harness.metrics.base.get_metric` accepts an old name.  Nothing is ever written under an
old name.  This module imports nothing, so the record schema can use it cheaply.
"""

from __future__ import annotations

RENAMED_METRICS: dict[str, str] = {
    # sklearn's average_precision_score: ERASER's `average_precision`, not ERASER's `auprc`
    # (the trapezoidal area under the PR curve)
    "auprc": "average_precision",
    # token-level IoU at the best threshold, not ERASER's span-level "IOU F1"
    "iou_best_tau": "token_iou_best_tau",
}
"""Old metric name -> current name (records written before the rename use the old names)."""


def current_name(name: str) -> str:
    """The current name of a metric (``name`` itself unless it was renamed)."""
    return RENAMED_METRICS.get(name, name)
