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


def user_error_types() -> tuple[type[BaseException], ...]:
    """Every exception type the CLI reports as a user error (one line, exit 2)."""
    from harness.core.registry import RegistryError
    from harness.core.submission import SubmissionError
    from harness.engine.official import SecretError
    from harness.models.families import UnknownFamilyError
    from harness.models.reference import ModelNotReadyError

    return (UserError, RegistryError, SubmissionError, SecretError, UnknownFamilyError, ModelNotReadyError)
