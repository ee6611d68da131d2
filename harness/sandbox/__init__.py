"""The sandbox: the harness end (:mod:`~harness.sandbox.isolation`), the fork server, the worker, its kernel layers and the strict reply parser.  See docs/SECURITY.md."""
