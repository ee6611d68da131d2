"""User errors: a mistake in what the user asked for (an unknown name, a bad task parameter, a
missing folder, an invalid record), as opposed to a failure of the harness itself.

The CLI prints a user error as one line, ``attriboard: error: <message>``, with the fix in the
message (close matches, the valid keys), and exits 2; ``--debug`` shows the traceback.  Anything
else is an internal error and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the request; its message says what was wrong and how to fix it."""


class TaskParameterError(UserError, TypeError):
    """A task parameter (``--set KEY=VALUE``) the task does not have."""


class UsageError(SystemExit):
    """A flag or flag combination a command cannot take (``--jobs 0``, ``--model`` with
    ``--models``): argparse's kind of error.  ``main`` prints it as one line, ``attriboard: error:
    <message>``, and lets it propagate, so the process exits 2 and an in-process caller of ``main``
    sees a :class:`SystemExit` as it does for argparse's own errors; ``str()`` is the message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.code = 2

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def user_error_types() -> tuple[type[BaseException], ...]:
    """Every exception type the CLI reports as a user error (one line, exit 2)."""
    from harness.core.registry import RegistryError
    from harness.core.submission import SubmissionError
    from harness.engine.official import SecretError
    from harness.models.families import UnknownFamilyError
    from harness.models.reference import ModelNotReadyError

    return (UserError, RegistryError, SubmissionError, SecretError, UnknownFamilyError, ModelNotReadyError)
