"""The app as an anonymous caller meets it: `python app.py` in a subprocess on loopback.

Server settings come from the environment, as an operator sets them (PEZ_QUEUE_SIZE and the
caps: PEZ_MAX_STEPS, PEZ_MAX_CANDIDATES, PEZ_MAX_RUN_SECONDS, PEZ_EXTRA_MODELS).
The server's own output (log lines, gradio's tracebacks) goes to a file a test can read from a
mark, and its memory can be read from /proc. Used by the black-box tests of issue 15
(tests/app/test_public_api.py, tests/app/test_public_mcp.py, tests/e2e/test_browser_states.py):
one server per test module.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
START_SECONDS = 120  # importing torch + gradio and building the demo, on a busy 2-core machine


# The server the API and MCP tests share (one per test package, tests/app/conftest.py): the caps an
# operator would set, small enough to test, and a CLIP enabled beyond the offered pairs.
EXTRA = "random:tiny"
MAX_STEPS, MAX_CANDIDATES, MAX_RUN_SECONDS = 5000, 4, 4
PUBLIC_ENV = {
    "PEZ_EXTRA_MODELS": EXTRA,
    "PEZ_MAX_STEPS": str(MAX_STEPS),
    "PEZ_MAX_CANDIDATES": str(MAX_CANDIDATES),
    "PEZ_MAX_RUN_SECONDS": str(MAX_RUN_SECONDS),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PublicServer:
    url: str  # ends with "/"
    proc: subprocess.Popen
    log_path: Path

    def mark(self) -> int:
        """A position in the server's log; `log_since(mark)` is what it wrote after it."""
        return self.log_path.stat().st_size

    def log_since(self, mark: int, settle: float = 0.3) -> str:
        time.sleep(settle)  # a traceback is printed just before the error reaches the client
        with open(self.log_path, "rb") as f:
            f.seek(mark)
            return f.read().decode(errors="replace")

    def assert_quiet(self, mark: int) -> None:
        """Nothing since `mark` printed a traceback: an expected mistake is not a crash."""
        log = self.log_since(mark)
        assert "Traceback" not in log, f"the server logged a traceback:\n{log[-2500:]}"

    def rss_mb(self) -> float | None:
        """Resident memory of the server process (Linux), in MiB."""
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(
    log_dir: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = (), port: int | None = None
) -> PublicServer:
    """`python app.py --offline-demo` (the toy world: no download) on a free loopback port (or
    `port`: a server started again where a stopped one was)."""
    port = port or free_port()
    log_path = Path(log_dir) / f"server-{port}-{time.monotonic_ns()}.log"
    full_env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",  # the server shares two cores with the test process (and a browser)
        "GRADIO_ANALYTICS_ENABLED": "False",
        **(env or {}),
    }
    cmd = [sys.executable, "app.py", "--offline-demo", "--device", "cpu", "--host", "127.0.0.1", "--port", str(port)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([*cmd, *args], cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    server = PublicServer(f"http://127.0.0.1:{port}/", proc, log_path)
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(server.url + "gradio_api/info", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"app.py did not answer within {START_SECONDS} s:\n{log_path.read_text()[-3000:]}")


# ---------------------------------------------------------------------------------------------
# Calling it as a client would


GENERIC_ERROR = "upstream Gradio app has raised an exception"  # what a client gets for a raw exception


@dataclass
class Outcome:
    """What a client saw: a value, or an error message; how long it took; whether it gave up."""

    value: object = None
    error: str | None = None
    seconds: float = 0.0
    timed_out: bool = False

    def __str__(self) -> str:
        if self.timed_out:
            return f"no answer within {self.seconds:.0f} s"
        what = f"error {self.error!r}" if self.error is not None else f"value {self.value!r:.300}"
        return f"{what} after {self.seconds:.1f} s"


def call(client, *args, api_name: str, timeout: float = 30, **kwargs) -> Outcome:
    """`client.submit(...).result()`, never raising: a run still going after `timeout` s is
    cancelled (so a test of a missing cap cannot hold the server's model slot)."""
    start = time.monotonic()
    job = client.submit(*args, api_name=api_name, **kwargs)
    try:
        value = job.result(timeout=timeout)
    except TimeoutError:
        job.cancel()
        return Outcome(seconds=time.monotonic() - start, timed_out=True)
    except Exception as e:  # noqa: BLE001 - the message is what the test checks
        return Outcome(error=str(e), seconds=time.monotonic() - start)
    return Outcome(value=value, seconds=time.monotonic() - start)


def assert_refused(out: Outcome, *needles: str) -> str:
    """The call was refused with a message a user can act on: it contains every needle (a field
    name, the value received, the bound...) and is not gradio's generic error. Returns it."""
    assert out.error is not None, f"accepted, expected a refusal mentioning {needles}: {out}"
    assert GENERIC_ERROR not in out.error, f"the generic error instead of a message naming {needles}"
    missing = [n for n in needles if n.lower() not in out.error.lower()]
    assert not missing, f"the message does not mention {missing}: {out.error!r}"
    return out.error
