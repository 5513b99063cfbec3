"""Why a request is refused: one HTTP status and one line, never a traceback.

A film the reader cannot use raises `FilmError` with a one-line reason and a kind; `status_for` maps the kind
to the status code the API documents:

- 400 Bad Request: an empty file, a form without its `file` field, a broken multipart body;
- 413 Content Too Large: over --max_upload_mb, and decompression bombs (a small file that claims more than
  films.MAX_PIXELS pixels): both are "too large to handle", refused before the pixels are decoded;
- 415 Unsupported Media Type: not a PNG, JPEG or DICOM (a PDF, a GIF, text...), or DICOM compressed in a
  syntax no installed decoder reads;
- 422 Unprocessable Content: the right kind of file that cannot be used: a DICOM without pixel data, a
  truncated or damaged image.
"""

from __future__ import annotations

from cxr14.errors import FilmError


class Refused(Exception):
    """A request the server will not serve: `status` and the one-line `reason` sent as {"detail": reason}."""

    def __init__(self, status: int, reason: str, retry_after: int | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


STATUS = {"empty": 400, "too_large": 413, "unsupported": 415, "no_pixels": 422, "damaged": 422}


def status_for(exc: FilmError) -> int:
    """The status code for a film the reader refused (see the module docstring for the classes)."""
    return STATUS[exc.kind]


def refuse_film(exc: FilmError) -> Refused:
    """A FilmError as a refusal; its message is already one line, short enough to show on the page."""
    return Refused(status_for(exc), str(exc))


def too_large(limit_bytes: int) -> Refused:
    return Refused(413, f"upload over the {limit_bytes / 2**20:g} MiB limit of this server (--max_upload_mb)")
