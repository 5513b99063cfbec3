"""`cxr14 serve`'s API on a real uvicorn on 127.0.0.1, with the model trained on phantoms: answers equal to
`cxr14 predict --json`, heatmaps, every bad upload refused with its status and one line, a full queue refused
with 503, and the server still right after each of them."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'cxr14[serve]'")
import httpx

from cxr14.config import ServeConfig
from cxr14.errors import UserError
from cxr14.labels import NIH_LABELS
from cxr14.model.inference import Classifier
from cxr14.model.loading import LoadedModel
from cxr14.using.serve import runner
from cxr14.using.serve.app import create_app
from cxr14.using.serve.pool import ModelGate
from cxr14.using.serve.uploads import FRAMING, client_name
from tests.conftest import run_cli
from tests.test_films import _png_header_only, dicom_bytes, make_dicom

pytest_plugins = ("tests.serve_fixtures",)
if TYPE_CHECKING:
    from tests.serve_fixtures import PredictRun

LIMIT_MB = 1  # the test server's --max_upload_mb: "too large" costs a megabyte, not 32


def settings(checkpoint: Path, **kw) -> ServeConfig:
    return ServeConfig(checkpoint=checkpoint, **{"max_upload_mb": LIMIT_MB, "workers": 2, "queue": 4, **kw})


@pytest.fixture(scope="module")
def server(
    serve_model: LoadedModel, serve_checkpoint: Path, predict_run: PredictRun, cli_server: tuple
) -> Iterator[str]:
    """The test server (in-process); asking for predict_run and cli_server starts those subprocesses now, so
    they start up while the first tests run."""
    with runner.in_thread(create_app(serve_model, settings(serve_checkpoint))) as url:
        yield url


@pytest.fixture(scope="module")
def cli_server(
    serve_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[subprocess.Popen, int, Path]]:
    """The real `cxr14 serve` in a subprocess, started with the module so its start-up overlaps the tests."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path_factory.mktemp("cli_server") / "stderr.txt"
    with log.open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "cxr14", "serve", "--checkpoint", str(serve_checkpoint), "--port", str(port),
             "--device", "cpu"], stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    yield process, port, log
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=60) as c:
        yield c


def post(client: httpx.Client, name: str, data: bytes, query: str = "") -> httpx.Response:
    return client.post(f"/api/predict{query}", files={"file": (name, data, "application/octet-stream")})


def same_row(got: dict, want: dict) -> None:
    """Equal to what the CLI printed: same keys, file and findings; probabilities to its sixth decimal."""
    assert list(got) == list(want) == ["file", "probabilities", "findings", "ood_score", "unusual", "reason"]
    assert got["file"] == want["file"] and got["findings"] == want["findings"]
    assert got["unusual"] == want["unusual"] and got["reason"] == want["reason"]
    assert got["ood_score"] == pytest.approx(want["ood_score"], abs=1.01e-4)
    assert list(got["probabilities"]) == list(NIH_LABELS)
    for label in NIH_LABELS:
        assert got["probabilities"][label] == pytest.approx(want["probabilities"][label], abs=1.01e-6)


def png_of(data_url: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert data_url.startswith(prefix)
    return Image.open(io.BytesIO(base64.b64decode(data_url[len(prefix) :])))


def test_health_and_model_card(client: httpx.Client, phantom_run: tuple[Path, Path]) -> None:
    assert client.get("/api/health").json() == {"status": "ok", "workers": 2, "queue": 4, "in_progress": 0}
    card = client.get("/api/model").json()
    metrics = json.loads((phantom_run[0] / "metrics.json").read_text())
    assert (card["model"], card["image_size"], card["checkpoint"]) == ("convnext_atto", 64, "best_model.pth")
    assert card["test"]["mean_auroc"] == pytest.approx(metrics["mean_auroc"])
    assert card["test"]["mean_auroc_ci"] == pytest.approx(metrics["mean_auroc_ci"])
    assert list(card["thresholds"]) == list(NIH_LABELS)
    assert any(t is not None for t in card["thresholds"].values())
    assert "config" not in card and "not a diagnostic device" in card["notice"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", card["trained"])


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on the file without pixels
def _raw_exchange(url: str, head: bytes, chunks: list[bytes]) -> bytes:
    """Send a request's head and body chunks on a plain socket; return the answer (head and body)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(head)
        for chunk in chunks:
            sock.sendall(chunk)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < _length(answer):
            data = sock.recv(65536)
            if not data:
                break
            answer += data
        return answer


def _length(answer: bytes) -> int:
    found = re.search(rb"(?i)\r\ncontent-length: *(\d+)", answer)
    return int(found.group(1)) if found else 0


def test_too_large_refused_by_declared_length_before_any_body(server: str, client: httpx.Client) -> None:
    head = (b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: %d\r\n\r\n" % (50 * 2**20))  # fmt: skip
    answer = _raw_exchange(server, head, [])  # no body at all: an answer proves none was waited for
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"1 MiB limit" in answer
    assert client.get("/api/health").status_code == 200


def test_too_large_refused_while_streaming_without_a_length(server: str, client: httpx.Client) -> None:
    head = (b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
    body, _ = _multipart("file", b"x" * (LIMIT_MB * 2**20 + FRAMING))  # a well-formed part, just over the cap
    body = body[: len(body) - 20]  # and not finished: the server must answer before the end
    piece = 256 * 1024
    chunks = [b"%x\r\n%s\r\n" % (len(part), part) for part in (body[i : i + piece] for i in range(0, len(body), piece))]
    answer = _raw_exchange(server, head, chunks)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert client.get("/api/health").json()["in_progress"] == 0


def test_concurrent_heatmaps_and_scoring_agree_with_serial(client: httpx.Client, serve_films: Path) -> None:
    """Two workers; heatmaps hook the shared model, so the gate must keep scoring out while one runs."""
    png = (serve_films / "film.png").read_bytes()
    queries = ["", "?cam=Effusion", "", "?cam=Mass", "", "?cam=Effusion"]
    serial = [post(client, "film.png", png, q).json() for q in queries]
    results: dict[int, dict] = {}

    def worker(i: int) -> None:
        with httpx.Client(base_url=str(client.base_url), timeout=60) as own:
            results[i] = post(own, "film.png", png, queries[i]).json()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(queries))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for i, want in enumerate(serial):
        got = results[i]
        assert got.keys() == want.keys() and got["findings"] == want["findings"]
        assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1.01e-6)
        if "heatmap" in want:
            a, b = (np.asarray(png_of(r["heatmap"]), dtype=np.int16) for r in (got, want))
            assert np.abs(a - b).max() <= 1


class GatedClassifier(Classifier):
    """Scores only once `opened` is set (a slow model for the queue test); raises if `broken`."""

    def __init__(self, inner: Classifier, broken: bool = False) -> None:
        super().__init__(inner.model, inner.transform, inner.precision, inner.gate)
        self.opened = threading.Event()
        self.broken = broken

    def run(self, images, features=False):
        if self.broken:
            raise RuntimeError("a bug\nspread over lines")
        assert self.opened.wait(30)
        return super().run(images, features)


def test_full_queue_gets_503_and_work_in_progress_finishes(
    serve_model: LoadedModel, serve_checkpoint: Path, serve_films: Path
) -> None:
    slow = GatedClassifier(serve_model.classifier)
    one_and_one = settings(serve_checkpoint, workers=1, queue=1)
    app = create_app(dataclasses.replace(serve_model, classifier=slow), one_and_one)
    png = (serve_films / "film.png").read_bytes()
    with runner.in_thread(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        answers: list[int] = []
        held = [threading.Thread(target=lambda: answers.append(post(client, "a.png", png).status_code)) for _ in "ab"]
        for t in held:
            t.start()
        deadline = time.monotonic() + 20
        while app.state.pool.admitted < 2 and time.monotonic() < deadline:  # one scoring, one waiting
            time.sleep(0.01)
        busy = post(client, "c.png", png)
        assert busy.status_code == 503 and busy.headers["retry-after"] == "2"
        assert "busy" in busy.json()["detail"] and "--queue 1" in busy.json()["detail"]
        assert client.get("/api/health").json()["in_progress"] == 2  # health still answers while busy
        slow.opened.set()
        for t in held:
            t.join(30)
        assert answers == [200, 200]
        assert post(client, "d.png", png).status_code == 200
        assert client.get("/api/health").json()["in_progress"] == 0


def test_unexpected_error_is_a_one_line_500_and_the_server_goes_on(
    serve_model: LoadedModel, serve_checkpoint: Path, serve_films: Path
) -> None:
    broken = GatedClassifier(serve_model.classifier, broken=True)
    app = create_app(dataclasses.replace(serve_model, classifier=broken), settings(serve_checkpoint))
    png = (serve_films / "film.png").read_bytes()
    with runner.in_thread(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(2):
            response = post(client, "a.png", png)
            assert response.status_code == 500
            assert response.json() == {"detail": "internal error (RuntimeError); the details are in the server's log"}
        assert client.get("/api/health").json() == {"status": "ok", "workers": 2, "queue": 4, "in_progress": 0}


def test_uploads_stay_in_memory(
    serve_model: LoadedModel, serve_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 3 MB film under a 4 MiB cap is parsed without the multipart spool ever rolling over to a disk file."""
    rolled: list[int] = []
    monkeypatch.setattr(tempfile.SpooledTemporaryFile, "rollover", lambda self: rolled.append(1))
    noise = np.random.default_rng(0).integers(0, 256, (1700, 1700), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="PNG", compress_level=1)
    assert 2.5 * 2**20 < len(buf.getvalue()) < 4 * 2**20
    app = create_app(serve_model, settings(serve_checkpoint, max_upload_mb=4))
    with runner.in_thread(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        assert post(client, "big.png", buf.getvalue()).status_code == 200
    assert rolled == []


def test_openapi_schema_documents_the_upload_and_refusals(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    predict = schema["paths"]["/api/predict"]["post"]
    assert "file" in predict["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert {"200", "400", "413", "415", "422", "503"} <= set(predict["responses"])
    assert {"/api/model", "/api/health"} <= set(schema["paths"])


def test_docs_page_is_served_from_this_server_only(client: httpx.Client) -> None:
    page = client.get("/docs")
    if page.status_code == 404:
        assert "pip install 'cxr14[serve]'" in page.text
        pytest.skip("fastapi-offline not installed (it serves Swagger UI locally): pip install 'cxr14[serve]'")
    assert page.status_code == 200
    links = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", page.text)
    assert links and not [u for u in links if re.match(r"(?i)(https?:)?//", u)], links
    for url in links:
        assert client.get(url).status_code == 200, url


def test_page_and_assets_are_local(client: httpx.Client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    links = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", page.text)
    assert "/static/app.js" in links and "/static/style.css" in links
    assert not [u for u in links if re.match(r"(?i)(https?:)?//", u)]
    for url in ("/static/app.js", "/static/style.css"):
        text = client.get(url).text
        assert not re.search(r"(?i)https?://", text), url


def test_client_names_are_names_not_paths() -> None:
    assert client_name("../../etc/passwd") == "passwd"
    assert client_name("C:\\films\\chest.png") == "chest.png"
    assert client_name("") == client_name(None) == "upload"
    assert len(client_name("a" * 1000)) == 255


def test_model_gate_keeps_heatmaps_alone() -> None:
    gate, log = ModelGate(), []

    def use(kind: str) -> None:
        with gate.exclusive() if kind == "heatmap" else gate.shared():
            log.append(kind)

    with gate.shared():
        heatmap = threading.Thread(target=use, args=("heatmap",))
        heatmap.start()
        time.sleep(0.1)
        assert log == []  # the heatmap waits for scoring to end
    heatmap.join(5)
    with gate.exclusive():
        scoring = threading.Thread(target=use, args=("scoring",))
        scoring.start()
        time.sleep(0.1)
        assert log == ["heatmap"]  # and scoring waits for the heatmap
    scoring.join(5)
    assert log == ["heatmap", "scoring"]


def test_start_up_words_missing_extra_and_busy_port(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "this machine only" in runner.announce(ServeConfig(checkpoint=Path("m.pth")))
    assert "no login" in runner.announce(ServeConfig(checkpoint=Path("m.pth"), host="0.0.0.0"))
    with socket.create_server(("127.0.0.1", 0)) as taken, pytest.raises(UserError, match="--port"):
        runner.bind("127.0.0.1", taken.getsockname()[1])
    monkeypatch.setattr(runner, "STACK", ("fastapi", "python_multipart_not_here"))
    with pytest.raises(UserError, match=re.escape("pip install 'cxr14[serve]'")):
        runner.serve(ServeConfig(checkpoint=Path("m.pth")))


def test_cli_checks_its_options() -> None:
    out = run_cli("-m", "cxr14", "serve", "--checkpoint", "m.pth", "--port", "70000")
    assert out.returncode == 2 and "--port 70000 is out of range" in out.stderr


# Compared with `cxr14 predict --json`: last, so that the CLI started with the server has finished by now.


def test_predict_equals_cli_for_png_and_dicom(client: httpx.Client, serve_films: Path, cli_rows: dict) -> None:
    for name in ("film.png", "film.dcm"):
        response = post(client, name, (serve_films / name).read_bytes())
        assert response.status_code == 200, response.text
        same_row(response.json(), cli_rows[name])
        assert response.text == json.dumps(response.json()) + "\n"  # the line, as `predict --json` writes it
    with_film = post(client, "film.dcm", (serve_films / "film.dcm").read_bytes(), "?film=1").json()
    assert png_of(with_film.pop("film")).size == Image.open(serve_films / "film.png").size
    same_row(with_film, cli_rows["film.dcm"])


def test_unusual_films_are_flagged_by_the_api(client: httpx.Client, serve_films: Path, tmp_path: Path) -> None:
    from sklearn.datasets import load_sample_images

    buf = io.BytesIO()
    Image.fromarray(load_sample_images().images[1]).save(buf, format="JPEG")
    body = post(client, "photo.jpg", buf.getvalue()).json()
    assert body["unusual"] is True and "colour photograph" in body["reason"] and body["findings"] == []
    assert body["ood_score"] is not None and len(body["probabilities"]) == 14  # given, not called
    phantom = post(client, "film.png", (serve_films / "film.png").read_bytes()).json()
    assert phantom["unusual"] is False and phantom["reason"] is None and phantom["ood_score"] < 1


def test_cam_adds_heatmap_png(client: httpx.Client, serve_films: Path, cli_rows: dict) -> None:
    row = post(client, "film.png", (serve_films / "film.png").read_bytes(), "?cam=Effusion").json()
    heat = png_of(row.pop("heatmap"))
    assert (heat.mode, heat.size) == ("RGBA", (64, 64))  # the model's input size; the page stretches it
    assert np.asarray(heat)[..., 3].max() == 255  # alpha is the heat, scaled to its maximum
    same_row(row, cli_rows["film.png"])


def _no_pixels() -> bytes:
    ds = make_dicom(np.zeros((8, 8), np.uint16))
    del ds.PixelData
    return dicom_bytes(ds)


def _multipart(field: str, data: bytes) -> tuple[bytes, str]:
    boundary = "b"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="x.png"\r\n'
            f"Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()  # fmt: skip
    return body, f"multipart/form-data; boundary={boundary}"


def test_every_bad_upload_is_refused_in_one_line_and_the_server_stays_right(
    client: httpx.Client, serve_films: Path, cli_rows: dict
) -> None:
    png = (serve_films / "film.png").read_bytes()
    wrong_field, ctype = _multipart("picture", png)

    def raw(body: bytes, content_type: str) -> httpx.Response:
        return client.post("/api/predict", content=body, headers={"content-type": content_type})

    cases = [  # (what, request, status, words of the reason)
        ("text", lambda: post(client, "notes.txt", b"just some text\n" * 10), 415, "looks like text"),
        ("empty", lambda: post(client, "empty.png", b""), 400, "empty file"),
        ("bomb", lambda: post(client, "bomb.png", _png_header_only(100_000, 100_000)), 413, "too large"),
        ("bomb under PIL's guard", lambda: post(client, "b.png", _png_header_only(9000, 9000)), 413, "bomb"),
        ("DICOM without pixels", lambda: post(client, "sr.dcm", _no_pixels()), 422, "without pixel data"),
        ("truncated", lambda: post(client, "cut.png", png[: len(png) // 2]), 422, "truncated"),
        ("unknown finding", lambda: post(client, "film.png", png, "?cam=Flu"), 400, "Pleural_Thickening"),
        ("bad flag", lambda: post(client, "film.png", png, "?film=maybe"), 422, "film"),
        ("no file field", lambda: raw(wrong_field, ctype), 400, "no file"),
        ("not a form", lambda: raw(png, "image/png"), 415, "multipart/form-data"),
        ("broken form", lambda: raw(b"--x\r\nnonsense", "multipart/form-data; boundary=x"), 400, "multipart"),
    ]
    for what, send, status, words in cases:
        response = send()
        assert response.status_code == status, (what, response.text)
        detail = response.json()["detail"]
        assert isinstance(detail, str) and words in detail, (what, detail)
        assert "\n" not in detail and "Traceback" not in detail, what
        good = post(client, "film.png", png)  # and the next good request is answered as before
        assert good.status_code == 200, what
        same_row(good.json(), cli_rows["film.png"])
    assert client.get("/api/health").json()["in_progress"] == 0


def test_cli_serve_says_where_it_listens_and_stops_on_ctrl_c(cli_server: tuple) -> None:
    process, port, log = cli_server
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    card = httpx.get(f"http://127.0.0.1:{port}/api/model").json()
    assert card["image_size"] == 64
    process.send_signal(signal.SIGINT)
    assert process.wait(30) == 0
    said = log.read_text()
    assert f"at http://127.0.0.1:{port}/ (this machine only" in said and "not a diagnostic device" in said
    assert "Traceback" not in said and "cxr14 serve stopped" in said
