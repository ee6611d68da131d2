"""ROAR and ROAR_BERT (paper 003 sec. 5.1): remove the top N% words an explainer ranks, retrain,
measure the accuracy drop against random removal (:mod:`tasks.roar.task`).  See docs/ROAR.md."""

from tasks.roar import task  # noqa: F401
from tasks.roar import board  # noqa: F401,E402  (its leaderboard section)
