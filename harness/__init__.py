"""attriboard: benchmark harness and leaderboard for NLP feature-attribution explainers.

Importing this package is cheap: heavy libraries (torch, transformers, captum, lime,
shap) are imported by the modules that need them.
"""

__version__ = "0.1.0"

#: Version of the on-disk result schema (bump when a field changes meaning).
RESULT_SCHEMA_VERSION = "1"

from harness.core import lazy_imports as _lazy_imports  # noqa: E402 - cheap: no third-party import

_lazy_imports.install()
