"""`cxr14 download` against a local HTTP server on 127.0.0.1 serving small archives built here.

The server speaks HTTP/1.1 with Range support and can misbehave on request: ignore Range, cut a
transfer after K bytes once, send wrong bytes once, or trickle. No test touches the internet.
"""

from __future__ import annotations

import _thread
import hashlib
import io
import json
import re
import socket
import tarfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr14.cli import main
from cxr14.data.nih_download.archives import nih_archives, nih_contents
from cxr14.data.nih_download.extract import member_problem

#: sha256 of the six metadata files as NIH publishes them (from shared/nih/README.md, not from the package).
NIH_SHA256 = {
    "Data_Entry_2017.csv": "88f75094e25ccc0c6f1f9cdfd4b2f94f9379a0ae07d5ff4dcf94242707b07462",
    "Data_Entry_2017_v2020.csv": "dc1d2df67fdc1c5a7601d48699cda2b13dc2c4841488b4183dcf04884dbaca11",
    "train_val_list.txt": "61fbe896321c1c1c8b75f3e4f3a08e4fef6486d95ef8a667c31d4d60dca6cb81",
    "test_list.txt": "38ca5ef7f756092946f57c1a59faca882ed589a1ab1f72590b45dc06c6d5e1cc",
    "BBox_List_2017.csv": "0bbfea9d4c4e9771481b3023b1bc9f0df9dea924453b12986beb29b0c4d0c95b",
    "google2019_nih-chest-xray-labels.csv": "86ece2bbb74ed71d2f8b0a14b21daf231f89346bb11f11144ce3e20696e8d238",
}


class Server(ThreadingHTTPServer):
    """Serves `files` by name; records every request as (name, Range header, body bytes sent)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.files: dict[str, bytes] = {}
        self.log: list[tuple[str, str | None, int]] = []
        self.ignore_range = False
        self.cut_once: dict[str, int] = {}  # name -> close the connection after this file offset, once
        self.corrupt_once: set[str] = set()  # name -> flip one byte in the next full transfer
        self.hold_once: dict[str, int] = {}  # name -> stall at this file offset until `release` (or 10 s)
        self.release = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def requests_for(self, name: str) -> list[tuple[str | None, int]]:
        return [(rng, sent) for n, rng, sent in self.log if n == name]

    def handle_error(self, request, client_address) -> None:  # a client that hangs up is not news
        pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        srv: Server = self.server  # type: ignore[assignment]
        name, rng = self.path.lstrip("/"), self.headers.get("Range")
        data = srv.files.get(name)
        if data is None:
            srv.log.append((name, rng, 0))
            self.send_error(404)
            return
        if name in srv.corrupt_once and not rng:
            srv.corrupt_once.discard(name)
            data = data[: len(data) // 2] + bytes([data[len(data) // 2] ^ 0xFF]) + data[len(data) // 2 + 1 :]
        start = int(re.fullmatch(r"bytes=(\d+)-", rng)[1]) if rng and not srv.ignore_range else 0
        if start >= len(data) > 0:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            srv.log.append((name, rng, 0))
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        end, hold = len(data), srv.hold_once.pop(name, None)
        if name in srv.cut_once:
            end = max(srv.cut_once.pop(name), start)
            self.close_connection = True
        sent = 0
        try:
            for i in range(start, end, 1 << 14):
                if hold is not None and i >= hold:
                    srv.release.wait(10)
                    hold = None
                self.wfile.write(data[i : min(i + (1 << 14), end)])
                sent += min(i + (1 << 14), end) - i
        finally:
            srv.log.append((name, rng, sent))


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy set in the environment must not stand between the tests and 127.0.0.1."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to resolve a host other than 127.0.0.1 fails the way an offline machine does."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host not in ("127.0.0.1", b"127.0.0.1"):
            raise socket.gaierror(f"tests must not touch the internet (asked for {host!r})")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()


def png_bytes(seed: int, size: int = 16) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, "L").save(buf, format="PNG")
    return buf.getvalue()


def make_archive(number: int, n_images: int = 3, size: int = 16) -> tuple[bytes, dict[str, bytes]]:
    """An NIH-layout archive (`images/NAME.png` members) and the images it holds."""
    images = {f"{number:08d}_{k:03d}.png": png_bytes(number * 100 + k, size) for k in range(n_images)}
    members = [(f"images/{name}", data) for name, data in images.items()]
    return tar_gz(members), images


def tar_gz(members: list[tuple[str, bytes]], extra: list[tarfile.TarInfo] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        folder = tarfile.TarInfo("images")
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)
    return buf.getvalue()


def publish(server: Server, tmp_path: Path, archives: dict[int, bytes], md5: dict[int, str] | None = None) -> Path:
    """Serve the archives and write the urls file (the test's own MD5 table) that points at them."""
    lines = ["number,url,images,bytes,md5"]
    for number, data in archives.items():
        name = f"images_{number:02d}.tar.gz"
        server.files[name] = data
        digest = (md5 or {}).get(number) or hashlib.md5(data).hexdigest()
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            n_images = sum(m.isreg() for m in tar)
        lines.append(f"{number},{server.url}/{name},{n_images},{len(data)},{digest}")
    urls = tmp_path / "urls.csv"
    urls.write_text("\n".join(lines) + "\n")
    return urls


def download(data_dir: Path, *args: str) -> int:
    return main(["download", "--data_dir", str(data_dir), "--no-progress", "--timeout", "5", *args])


def images_in(data_dir: Path) -> dict[str, bytes]:
    folder = data_dir / "images"
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.is_dir() else {}


def test_download_verify_unpack_then_second_run_fetches_nothing(server, tmp_path, capsys) -> None:
    (a1, im1), (a2, im2) = make_archive(1), make_archive(2)
    urls = publish(server, tmp_path, {1: a1, 2: a2})
    data = tmp_path / "data"
    assert download(data, "--urls_file", str(urls), "--jobs", "2") == 0
    assert images_in(data) == {**im1, **im2}
    assert not list(data.glob("images_*.tar.gz*")) and not list(data.glob(".cxr14-unpack-*"))
    for name, sha in NIH_SHA256.items():  # the metadata, written from package data, no network
        assert hashlib.sha256((data / name).read_bytes()).hexdigest() == sha, name
    assert (data / "Data_Entry_2017.csv").stat().st_mode & 0o044 == 0o044  # readable by others (umask 022)
    state = json.loads((data / ".cxr14-download.json").read_text())["unpacked"]
    assert state["1"]["images"] == 3 and state["2"]["first"] == "00000002_000.png"
    served = len(server.log)
    capsys.readouterr()
    assert download(data, "--urls_file", str(urls)) == 0
    assert len(server.log) == served  # not one request
    assert "nothing to download" in capsys.readouterr().err


def test_cut_transfer_resumes_and_ends_identical(server, tmp_path) -> None:
    archive, images = make_archive(1, n_images=6, size=64)
    urls = publish(server, tmp_path, {1: archive})
    cut = len(archive) // 2
    server.cut_once["images_01.tar.gz"] = cut
    assert download(tmp_path / "data", "--urls_file", str(urls), "--keep_archives") == 0
    assert server.requests_for("images_01.tar.gz") == [(None, cut), (f"bytes={cut}-", len(archive) - cut)]
    assert (tmp_path / "data" / "images_01.tar.gz").read_bytes() == archive
    assert images_in(tmp_path / "data") == images


def test_rerun_continues_a_partial_file_from_its_last_byte(server, tmp_path) -> None:
    archive, images = make_archive(1, n_images=6, size=64)
    urls = publish(server, tmp_path, {1: archive})
    data = tmp_path / "data"
    data.mkdir()
    (data / "images_01.tar.gz.part").write_bytes(archive[:1000])  # as an interrupted run leaves it
    assert download(data, "--urls_file", str(urls), "--keep_archives") == 0
    assert server.requests_for("images_01.tar.gz") == [("bytes=1000-", len(archive) - 1000)]
    assert (data / "images_01.tar.gz").read_bytes() == archive and images_in(data) == images


def test_server_without_range_support_restarts_the_file_cleanly(server, tmp_path) -> None:
    archive, images = make_archive(1, n_images=6, size=64)
    urls = publish(server, tmp_path, {1: archive})
    server.ignore_range = True
    server.cut_once["images_01.tar.gz"] = len(archive) // 3  # the resume after the cut is answered with 200
    data = tmp_path / "data"
    data.mkdir()
    (data / "images_01.tar.gz.part").write_bytes(archive[:500])
    assert download(data, "--urls_file", str(urls), "--keep_archives") == 0
    ranges = [rng for rng, _ in server.requests_for("images_01.tar.gz")]
    assert ranges == ["bytes=500-", f"bytes={len(archive) // 3}-"]  # asked to resume twice, restarted twice
    assert (data / "images_01.tar.gz").read_bytes() == archive and images_in(data) == images


def test_wrong_bytes_are_caught_by_md5_and_fetched_once_more(server, tmp_path, capsys) -> None:
    archive, images = make_archive(1)
    urls = publish(server, tmp_path, {1: archive})
    server.corrupt_once.add("images_01.tar.gz")
    assert download(tmp_path / "data", "--urls_file", str(urls)) == 0
    assert len(server.requests_for("images_01.tar.gz")) == 2
    assert "MD5" in capsys.readouterr().err
    assert images_in(tmp_path / "data") == images


def test_md5_mismatch_twice_stops_naming_the_archive(server, tmp_path, capsys) -> None:
    (a1, _), (a2, im2) = make_archive(1), make_archive(2)
    urls = publish(server, tmp_path, {1: a1, 2: a2}, md5={1: "0" * 32})
    data = tmp_path / "data"
    assert download(data, "--urls_file", str(urls)) == 2
    err = capsys.readouterr().err
    assert "Archive 1 (images_01.tar.gz)" in err and "failed its MD5 check twice" in err
    assert len(server.requests_for("images_01.tar.gz")) == 2
    assert not list(data.glob("images_01.tar.gz*"))  # the wrong file is deleted
    assert images_in(data) == im2  # the good archive is complete and recorded


def _member(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


@pytest.mark.parametrize(
    ("extra", "member", "why"),
    [
        ([], "../escape.png", "outside"),
        ([_member("images/link.png", tarfile.SYMTYPE, "/etc/passwd")], "images/link.png", "is a link"),
        ([_member("images/hard.png", tarfile.LNKTYPE, "images/00000001_000.png")], "images/hard.png", "is a link"),
        ([_member("images/dev.png", tarfile.CHRTYPE)], "images/dev.png", "device"),
        ([], "/tmp/absolute.png", "absolute"),
        ([], "other/x.png", "not a file directly inside images/"),
    ],
)
def test_unsafe_members_are_refused(server, tmp_path, capsys, extra, member, why) -> None:
    good = [(f"images/00000001_00{k}.png", png_bytes(k)) for k in range(2)]
    files = good + ([(member, png_bytes(9))] if not extra else [])
    urls = publish(server, tmp_path, {1: tar_gz(files, extra)})
    data = tmp_path / "data"
    assert download(data, "--urls_file", str(urls)) == 2
    err = capsys.readouterr().err
    assert "Refusing to unpack images_01.tar.gz" in err and repr(member) in err and why in err
    assert not (tmp_path / "escape.png").exists() and not Path("/tmp/absolute.png").exists()
    assert images_in(data) == {} and not list(data.glob(".cxr14-unpack-*"))


def test_member_checks_accept_nih_layout_only() -> None:
    ok = tarfile.TarInfo("images/00000001_000.png")
    assert member_problem(ok) is None and member_problem(_member("images", tarfile.DIRTYPE)) is None
    assert member_problem(_member("images/sub", tarfile.DIRTYPE)) == "is a folder other than images/"
    assert "pipe" in member_problem(_member("images/fifo", tarfile.FIFOTYPE))
    assert "outside" in member_problem(tarfile.TarInfo("images/../../x.png"))


def test_unreachable_host_is_reported_in_seconds_with_metadata_written(tmp_path, capsys) -> None:
    with socket.socket() as s:  # a port nothing listens on: connection refused, as an offline host answers
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = tmp_path / "data"
    data.mkdir()
    (data / "test_list.txt").write_text("my own list")
    start = time.monotonic()
    assert download(data, "--base_url", f"http://127.0.0.1:{port}/nih", "--only", "1,2") == 2
    assert time.monotonic() - start < 5
    err = capsys.readouterr().err
    assert f"Cannot reach 127.0.0.1 (port {port})" in err and "--base_url" in err and "--urls_file" in err
    assert "was written to" in err and "kept your own test_list.txt" in err
    assert (data / "test_list.txt").read_text() == "my own list"  # a user's file is never overwritten
    assert hashlib.sha256((data / "train_val_list.txt").read_bytes()).hexdigest() == NIH_SHA256["train_val_list.txt"]


def test_archive_put_there_by_hand_is_verified_and_unpacked_offline(server, tmp_path) -> None:
    archive, images = make_archive(1)
    urls = publish(server, tmp_path, {1: archive})
    server.files.clear()  # nothing to download from: the file must come from the folder
    data = tmp_path / "data"
    data.mkdir()
    (data / "images_01.tar.gz").write_bytes(archive)
    assert download(data, "--urls_file", str(urls)) == 0
    assert server.log == [] and images_in(data) == images and not (data / "images_01.tar.gz").exists()


def test_only_fetches_the_subset(server, tmp_path) -> None:
    archives = {n: make_archive(n) for n in (1, 2, 3)}
    urls = publish(server, tmp_path, {n: a for n, (a, _) in archives.items()})
    assert download(tmp_path / "data", "--urls_file", str(urls), "--only", "2-3") == 0
    assert {n for n, _, _ in server.log} == {"images_02.tar.gz", "images_03.tar.gz"}
    assert images_in(tmp_path / "data") == {**archives[2][1], **archives[3][1]}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--only", "13"], "not an archive number or range between 1 and 12"),
        (["--only", "3-1"], "not an archive number or range"),
        (["--jobs", "0"], "--jobs 0 is out of range: it must be >= 1 and <= 12"),
        (["--base_url", "ftp://x", "--only", "1"], "is not an http:// or https:// URL"),
        (["--deep"], "--deep and --workers belong to `cxr14 download --check`"),
    ],
)
def test_bad_options_are_explained(tmp_path, capsys, args, message) -> None:
    assert download(tmp_path / "data", *args) == 2
    assert message in capsys.readouterr().err


def test_bad_urls_file_is_explained(tmp_path, capsys) -> None:
    urls = tmp_path / "urls.csv"
    urls.write_text("number,url,md5\n1,http://127.0.0.1:9/a.tar.gz,xyz\n")
    assert download(tmp_path / "data", "--urls_file", str(urls)) == 2
    assert "line 2: md5 'xyz' is not 32 hex digits" in capsys.readouterr().err
    urls.write_text("number,url\n1,http://127.0.0.1:9/a.tar.gz\n")  # md5 from NIH's table
    assert download(tmp_path / "data", "--urls_file", str(urls), "--only", "2") == 2
    assert "--only asks for archive(s) 2, which the --urls_file does not list" in capsys.readouterr().err


def test_disk_space_is_checked_before_starting(server, tmp_path, capsys, monkeypatch) -> None:
    """Needed: the unpacked images (about the archive's size) plus the archive itself while it is held."""
    archive, images = make_archive(1)
    urls = publish(server, tmp_path, {1: archive})
    free = {"bytes": 2 * len(archive) - 1}
    target = "cxr14.data.nih_download.download.shutil.disk_usage"
    monkeypatch.setattr(target, lambda _: type("U", (), {"free": free["bytes"]})())
    assert download(tmp_path / "data", "--urls_file", str(urls)) == 2
    assert "Not enough disk space" in capsys.readouterr().err and server.log == []
    free["bytes"] += 1
    assert download(tmp_path / "data", "--urls_file", str(urls)) == 0 and images_in(tmp_path / "data") == images


def test_interrupt_keeps_the_part_and_a_rerun_continues_it(server, tmp_path, capsys) -> None:
    archive, images = make_archive(1, n_images=8, size=280)  # ~600 KiB of noise
    urls = publish(server, tmp_path, {1: archive})
    server.hold_once["images_01.tar.gz"] = len(archive) // 2  # the link stalls half-way: the user presses Ctrl-C
    data = tmp_path / "data"
    part = data / "images_01.tar.gz.part"

    def press_ctrl_c() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if part.is_file() and part.stat().st_size > 0:
                _thread.interrupt_main()  # what Ctrl-C does: KeyboardInterrupt in the main thread
                return
            time.sleep(0.005)

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    # --timeout 1: the stalled read gives up after a second, and the thread then sees the stop request
    assert download(data, "--urls_file", str(urls), "--timeout", "1") == 130
    assert "run the same command to continue" in capsys.readouterr().err
    kept = part.stat().st_size
    assert 0 < kept < len(archive) and images_in(data) == {}
    server.release.set()
    assert download(data, "--urls_file", str(urls)) == 0
    # the interrupted request may log itself late (its handler notices the hang-up when it next writes)
    assert (f"bytes={kept}-", len(archive) - kept) in server.requests_for("images_01.tar.gz")
    assert images_in(data) == images


def test_nih_table_is_consistent() -> None:
    table = nih_archives()
    assert [a.number for a in table] == list(range(1, 13)) and sum(a.images for a in table) == 112_120
    assert all(re.fullmatch(r"[0-9a-f]{32}", a.md5) and a.url.startswith("https://nihcc.box.com/") for a in table)
    assert table[0].md5 == "fe8ed0a6961412fddcbb3603c11b3698" and table[0].filename == "images_01.tar.gz"


def test_images_already_there_in_kaggle_layout_are_not_fetched(tmp_path, capsys) -> None:
    """Kaggle's copy of archive 1 (as empty stand-ins): NIH's archive 1 is skipped, without a network."""
    folder = tmp_path / "data" / "images_001" / "images"
    folder.mkdir(parents=True)
    for name in nih_contents()[1]:
        (folder / name).touch()
    assert download(tmp_path / "data", "--base_url", "http://127.0.0.1:9/nowhere", "--only", "1") == 0
    assert "images_01.tar.gz: all its 4,999 images are already present" in capsys.readouterr().err


def test_nih_default_offline_says_so(tmp_path, capsys) -> None:
    """Without a mirror the archives come from NIH's Box; offline (here: no name resolves) that takes seconds."""
    start = time.monotonic()
    assert download(tmp_path / "data", "--only", "1") == 2
    assert time.monotonic() - start < 5
    assert "Cannot reach nihcc.box.com (port 443)" in capsys.readouterr().err
