"""The FACADE stress test (paper 002): explainers on a model merged with a facade whose gradients
point at stop words or the first word (:mod:`tasks.facade.task`, the merge in
:mod:`harness.models.facade`).  See docs/FACADE.md."""

from tasks.facade import task  # noqa: F401
from tasks.facade import board  # noqa: F401,E402  (its leaderboard section)
