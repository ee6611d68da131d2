"""The ``esnli`` task package; importing it registers the task."""

from tasks.esnli import task  # noqa: F401
