"""Metrics: the registry and ground-truth metrics (:mod:`~harness.metrics.base`), removal (faithfulness) and plausibility metrics, bootstrap statistics."""
