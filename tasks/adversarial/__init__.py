"""Adversarial explanations (paper 001 sec. 2.3, 3.5): the top-k attack on explanations over the
fragility task's constrained synonym swaps (:mod:`tasks.adversarial.task`).  See docs/ADVERSARIAL.md."""

from tasks.adversarial import task  # noqa: F401
from tasks.adversarial import board  # noqa: F401,E402  (its leaderboard section)
