"""First use with network: the CLI downloads with visible progress (huggingface_hub's tqdm bar), a
transient drop resumes within the run, and a failed download is one clear line. (Across runs,
huggingface_hub 2.4 restarts a plain HTTP download; the hub's Xet-backed repos resume from
hf_xet's chunk cache, which this test cannot play.) Offline: a local HTTP server plays the Hugging Face Hub
(HF_ENDPOINT), serving a replica of RN50/openai's weights (the smallest open_clip tag on the hub)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pez.testing import replica

from ..conftest import noise_image

ROOT = Path(__file__).resolve().parents[2]
REPO, FILE = "timm/resnet50_clip.openai", "open_clip_model.safetensors"  # open_clip's file for RN50/openai


class FakeHub(BaseHTTPRequestHandler):
    """HEAD/GET of one file under /REPO/resolve/main/FILE; 404 for anything else.

    With `broken` set, a full GET sends only the first half and drops the connection, and a
    resumed GET (Range) fails, so huggingface_hub's own retries give up."""

    blob: bytes = b""
    broken = False
    ranges: list[str] = []

    def log_message(self, *args):  # quiet
        pass

    def _headers(self, size: int, status: int = 200, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("X-Repo-Commit", "0" * 40)
        self.send_header("ETag", '"' + hashlib.sha256(self.blob).hexdigest() + '"')
        self.send_header("Content-Length", str(size))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()

    def _known(self) -> bool:
        if self.path.split("?")[0] == f"/{REPO}/resolve/main/{FILE}":
            return True
        self.send_response(404)
        self.send_header("X-Error-Code", "EntryNotFound")  # what the hub says for a missing file
        self.send_header("Content-Length", "0")
        self.end_headers()
        return False

    def do_HEAD(self):
        if self._known():
            self._headers(len(self.blob))

    def do_GET(self):
        if not self._known():
            return
        start = int(self.headers.get("Range", "bytes=0-")[6:].split("-")[0] or 0)
        if start:
            type(self).ranges.append(self.headers["Range"])
        if self.broken and start:
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = self.blob[start:]
        if start:
            self._headers(len(body), 206, {"Content-Range": f"bytes {start}-{len(self.blob) - 1}/{len(self.blob)}"})
        else:
            self._headers(len(body))
        self.wfile.write(body[: len(body) // 2] if self.broken else body)
        if self.broken:
            self.close_connection = True


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    path = tmp_path_factory.mktemp("served") / FILE
    shapes = replica.state_shapes(replica.meta_clip("RN50"))
    replica.write_safetensors(path, shapes, replica.ValueSource(0), replica.DTYPES["fp16"])
    FakeHub.blob = path.read_bytes()
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _invert(endpoint: str, home: Path, image: Path, **extra_env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HOME": str(home), "HF_HUB_OFFLINE": "0", **extra_env}
    env.update({"HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_ETAG_TIMEOUT": "5", "HF_HUB_DOWNLOAD_TIMEOUT": "5"})
    env.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
    args = ["invert", str(image), "-m", "RN50/openai", "--steps", "1", "--prompt-len", "2", "--device", "cpu", "-q"]
    return subprocess.run([sys.executable, "-m", "pez", *args], cwd=ROOT, env=env, capture_output=True, text=True)


def test_failed_download_is_one_line_and_a_transient_one_resumes_with_progress(hub, tmp_path):
    image = tmp_path / "a.png"
    noise_image(0).save(image)
    FakeHub.broken, FakeHub.ranges = True, []  # every connection drops half-way, resuming fails
    done = _invert(hub, tmp_path / "home", image)
    assert done.returncode == 2, done.stderr[-2000:]
    assert FakeHub.ranges and FakeHub.ranges[0] != "bytes=0-"  # huggingface_hub tried to resume
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr
    assert "RN50/openai" in errors[0] and FILE in errors[0] and "again" in errors[0]

    FakeHub.broken, FakeHub.ranges = False, []
    # huggingface_hub shows its bars on a terminal (tqdm's disable=None); TQDM_POSITION=-1 is its
    # switch to show them on a pipe too, so this sees what a user's terminal would (unless pez had
    # disabled huggingface_hub's bars, which would win over it).
    done = _invert(hub, tmp_path / "home", image, TQDM_POSITION="-1")
    assert done.returncode == 0, done.stderr[-2000:]
    assert FILE[-30:] in done.stderr and "%|" in done.stderr  # huggingface_hub's tqdm bar, on the CLI
    assert done.stdout.strip()
