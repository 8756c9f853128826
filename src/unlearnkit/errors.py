"""The one exception type users see.

Anything the user can fix (a bad path, an unknown class, a mistyped hyperparameter)
raises `UnlearnkitError` with a single line that names the input and what to do.
The CLI prints it as `error: <message>` and exits with status 2; a traceback means a bug.
"""


class UnlearnkitError(Exception):
    """A user-facing error: one line naming the input and the fix."""

    def __init__(self, message: str):
        # Collapse to one line so the CLI's promise ("one-line error") holds for every caller.
        super().__init__(" ".join(str(message).split()))
