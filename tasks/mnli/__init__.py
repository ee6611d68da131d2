"""The ``mnli`` task package; importing it registers the task."""

from tasks.mnli import task  # noqa: F401
