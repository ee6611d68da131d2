"""T4 fragility (ExplainFooler, paper 000): the task (:mod:`tasks.fragility.task`), the attack,
its constraints and resources, metrics, tables and plots.  See docs/FRAGILITY.md."""

from tasks.fragility import task  # noqa: F401
from tasks.fragility import board  # noqa: F401,E402  (its leaderboard sections)
