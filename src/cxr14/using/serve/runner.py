"""`cxr14 serve`: load the checkpoint, bind the socket, run uvicorn until Ctrl-C (exit status 0).

The socket is bound here, before uvicorn starts, so a port already in use is one clear error instead of a
log line from inside the server. Torch's intra-op threads are divided among the workers (a process-wide
setting, so it is made here and not in the app factory): two workers each running all-core kernels would
only fight over the cores.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from cxr14.config import ServeConfig
from cxr14.errors import UserError, require_extra

log = logging.getLogger(__name__)
#: What the serve extra brings, by import name.
STACK = ("fastapi", "uvicorn", "python_multipart")


def serve(cfg: ServeConfig) -> None:
    """Serve `cfg.checkpoint` on cfg.host:cfg.port until interrupted."""
    require_extra("serve", "serve", STACK)
    import torch
    import uvicorn

    from cxr14.model.loading import load_model
    from cxr14.using.serve.app import NOTICE, create_app

    model = load_model(cfg.checkpoint, cfg.device)
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // cfg.workers))
    sock = bind(cfg.host, cfg.port)
    app = create_app(model, cfg)
    # Connections beyond this get 503 from uvicorn itself: a bound on open sockets as the pool bounds work.
    limit = 4 * (cfg.workers + cfg.queue) + 16
    config = uvicorn.Config(app, log_level="info", limit_concurrency=limit, server_header=False,
                            timeout_graceful_shutdown=5)  # fmt: skip
    log.log(logging.INFO if is_loopback(cfg.host) else logging.WARNING, "%s", announce(cfg))
    log.info("%s", NOTICE)
    # uvicorn shuts down on Ctrl-C, then raises it again; for a server it is the normal way to stop.
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run(sockets=[sock])
    log.info("cxr14 serve stopped")


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port, or a UserError that says what to change."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=128)
    except socket.gaierror as exc:
        raise UserError(f"--host {host} is not an address of this machine ({exc.strerror}); try 127.0.0.1.") from exc
    except OSError as exc:
        raise UserError(
            f"cannot listen on {host}:{port} ({exc.strerror}): another program may be using the port; choose "
            f"another with --port."
        ) from exc


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def announce(cfg: ServeConfig) -> str:
    """The start-up line: where to open the page, and who else can reach it."""
    shown = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    url = f"http://{shown}:{cfg.port}/"
    if is_loopback(cfg.host):
        return f"serving {cfg.checkpoint} at {url} (this machine only; --host 0.0.0.0 opens it to the network)"
    return (
        f"serving {cfg.checkpoint} at {url} on {cfg.host}: anyone who can reach this machine can use it; there is "
        f"no login and uploads travel unencrypted (plain http)"
    )


@contextlib.contextmanager
def in_thread(app: Any, host: str = "127.0.0.1", port: int = 0, timeout: float = 20.0) -> Iterator[str]:
    """Run `app` under uvicorn on a background thread (port 0: a free one); yield its base URL; stop it after.

    For the tests, the browser test and the screenshot script: the real server and sockets, in-process.
    """
    import uvicorn

    sock = bind(host, port)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="cxr14-serve-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the in-thread server did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
