"""Is a host reachable at all? One quick TCP connect, so an offline machine fails in seconds.

Used before anything that would otherwise spend minutes in retries with backoff (pretrained weights
from the Hugging Face hub, NIH's archives from Box) to turn "no network" into one clear paragraph.
"""

from __future__ import annotations

import socket


def reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """True if a TCP connection to host:port opens within `timeout` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
