"""The project's exception types: UserError and Stopped end a command with a message and an exit status
instead of a traceback; FilmError names why one image cannot be read."""


class UserError(Exception):
    """Something the user can fix: a missing file, a bad argument, no network.

    The message is a full paragraph: what went wrong, which file, and what to do about it.
    The CLI prints it instead of a traceback and exits 2.
    """


class FilmError(ValueError):
    """One image that cannot be read as a film: empty, not an image, too large, truncated, no pixels.

    The message is ONE line, short enough for a web page to show as the reason for a 4xx, and names the
    fix where there is one. A ValueError, so code that already counts DECODE_ERRORS as skips counts these.
    Callers add the file name (the reader may only have bytes). `kind` says which of KINDS it is, so a caller
    (the web API's status codes) never has to read the wording.
    """

    KINDS = ("empty", "too_large", "unsupported", "no_pixels", "damaged")

    def __init__(self, reason: str, kind: str = "damaged") -> None:
        if kind not in self.KINDS:
            raise ValueError(f"FilmError kind {kind!r} is not one of {self.KINDS}")
        super().__init__(reason)
        self.kind = kind


class Stopped(Exception):
    """A signal stopped a job after it saved its state; the CLI exits with `status` (128 + signal number)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status
