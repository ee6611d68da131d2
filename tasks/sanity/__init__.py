"""Sanity and bias checks (T5): model-randomization sensitivity, initialization consistency,
masked-LM predictability (the ``sanity`` task, :mod:`tasks.sanity.task`) and the Deletion vs
Deletion_BERT bias matrix (computed from result records at leaderboard time).  See docs/SANITY.md."""

from tasks.sanity import task  # noqa: F401
from tasks.sanity import board  # noqa: F401,E402  (its leaderboard sections)
