"""The ``planted_sst`` task package; importing it registers the task."""

from tasks.planted_sst import task  # noqa: F401
