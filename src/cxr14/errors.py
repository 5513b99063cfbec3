"""The one exception type that the CLI turns into a short message instead of a traceback."""


class UserError(Exception):
    """Something the user can fix: a missing file, a bad argument, no network.

    The message is a full paragraph: what went wrong, which file, and what to do about it.
    """
