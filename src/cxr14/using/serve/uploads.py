"""Reading an uploaded film: size-capped, in memory, never under a name the client chose.

Two checks bound what one upload can cost. `check_headers` runs before the request is admitted: a declared
Content-Length over the cap gets 413 at once, before a byte of the body is read. `read_upload` then reads
the body as it arrives and stops at the cap with 413 too, for a client that lies about its length or sends
it in chunks without one. The multipart body is parsed by Starlette's parser (python-multipart underneath)
with its spool raised to the cap, so the file stays in memory and never reaches the disk. The client's
file name is kept only to be echoed in the JSON, as `cxr14 predict` echoes a path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import PurePosixPath

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from cxr14.using.serve.refusals import Refused, too_large

#: Room for the multipart framing around the file (boundaries, part headers, a long file name).
FRAMING = 64 * 1024
FIELD = "file"
HOW = f"send the film as multipart/form-data in a field named '{FIELD}'"


@dataclass(frozen=True)
class Upload:
    name: str  # the client's file name, shown back in the JSON; never used as a path
    data: bytes


def check_headers(request: Request, limit: int) -> None:
    """Refuse, before reading anything, a body that is not multipart or says it is over `limit` + framing."""
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise Refused(415, f"not a form upload: {HOW}")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + FRAMING:
        raise too_large(limit)


async def read_upload(request: Request, limit: int) -> Upload:
    """The one file of a multipart upload, read into memory, at most `limit` bytes (else Refused(413))."""
    parser = MultiPartParser(request.headers, _capped(request.stream(), limit + FRAMING), max_files=1, max_fields=8)
    parser.spool_max_size = limit + FRAMING  # SpooledTemporaryFile: in memory up to this, so always
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise Refused(400, f"bad multipart upload ({exc.message}); {HOW}") from exc
    except ClientDisconnect as exc:
        raise Refused(400, "the upload was interrupted before it ended") from exc
    try:
        upload = form.get(FIELD)
        if not isinstance(upload, UploadFile):
            raise Refused(400, f"no file in the upload: {HOW}")
        data = await upload.read()
        if len(data) > limit:
            raise too_large(limit)
        return Upload(client_name(upload.filename), data)
    finally:
        await form.close()


async def _capped(stream: AsyncIterator[bytes], cap: int) -> AsyncIterator[bytes]:
    total = 0
    async for chunk in stream:
        total += len(chunk)
        if total > cap:
            raise too_large(cap - FRAMING)
        yield chunk


def client_name(filename: str | None) -> str:
    """The last part of the client's file name (either slash), at most 255 characters; 'upload' if none."""
    name = PurePosixPath((filename or "").replace("\\", "/")).name
    return name[:255] or "upload"
