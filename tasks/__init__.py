"""Built-in tasks; importing this package registers them in ``harness.task.TASKS``."""

from tasks import esnli, mnli, planted_sst  # noqa: F401
from tasks import fragility  # noqa: F401
from tasks import sanity  # noqa: F401
