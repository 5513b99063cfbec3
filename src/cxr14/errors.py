"""The project's exception types: UserError and Stopped end a command with a message and an exit status
instead of a traceback; FilmError names why one image cannot be read. And `require_extra`: a command whose
optional dependencies are missing says which and how to install them, before any work."""

import importlib.util
from collections.abc import Iterable


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


def require_extra(command: str, extra: str, modules: Iterable[str]) -> None:
    """A UserError naming the missing `modules` (import names) of cxr14's `extra`, with its install line."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        names, verb = ", ".join(missing).replace("_", "-"), "is" if len(missing) == 1 else "are"
        raise UserError(f"cxr14 {command} needs {names}, which {verb} not installed: pip install 'cxr14[{extra}]'")
