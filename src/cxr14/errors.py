"""The exceptions that the CLI turns into a short message and an exit status instead of a traceback."""


class UserError(Exception):
    """Something the user can fix: a missing file, a bad argument, no network.

    The message is a full paragraph: what went wrong, which file, and what to do about it.
    """


class Stopped(Exception):
    """A signal stopped a job after it saved its state; the CLI exits with `status` (128 + signal number)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status
