"""pez in real processes: `python -m pez`, the batch CLI killed and resumed, accelerate, a fresh
interpreter's imports, offline errors and the GPU check script. Slower than the in-process tests
of tests/unit (each starts Python and imports torch); the same behaviour in-process is tested there.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pez import batch
from pez.cli import run as cli_run

from ..bad_inputs import make_files
from ..conftest import noise_image
from ..unit.test_batch import MODEL, by_path, lines, make_folder

ROOT = Path(__file__).resolve().parents[2]
FAST = ["-m", "random:tiny", "--device", "cpu", "--steps", "6", "--prompt-len", "3", "--report-every", "2", "-q"]


def _env(**extra: str) -> dict:
    """This checkout's pez first on the path (as `pip install -e .` would), one thread, offline."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": path, **extra}


def test_core_never_imports_gradio():
    code = "import sys, pez, pez.cli, pez.generate; print('gradio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


def test_python_dash_m(tmp_path):
    image = tmp_path / "img.png"
    noise_image(0).save(image)
    out = subprocess.run(
        [sys.executable, "-m", "pez", "invert", str(image), *FAST],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines()[1].startswith("# score")


def test_cli_in_a_real_process_exits_2_with_one_line(tmp_path):
    files = make_files(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "pez", "invert", str(files["ok"]), "-m", "no-such-model", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: model: expected a pair name") and done.stderr.count("\n") == 1


def test_missing_weights_offline_are_found_first_and_clear():
    """Real loading code, up to the point of download: offline + not cached -> a clear error, raised
    before any model is built (fast on any machine: no timing asserted)."""
    code = (
        "import pez, open_clip\n"
        "def built(*a, **k):\n"
        "    raise SystemExit('BUILT: a model was built before the missing weights were noticed')\n"
        "open_clip.create_model_and_transforms = open_clip.create_model = built\n"
        "try:\n"
        "    pez.load_clip('sd-1.5', device='cpu')\n"
        "except pez.WeightsNotFoundError as e:\n"
        "    print('ERR', e)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": "/nonexistent-pez-test-home"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=ROOT,
    )
    assert out.stdout.startswith("ERR"), out.stderr[-2000:]
    msg = out.stdout
    assert "ViT-L-14/openai" in msg and "HF_HUB_OFFLINE" in msg and "local file" in msg
    assert "Traceback" not in out.stderr


def test_sigkill_mid_run_then_resume_gives_each_image_exactly_once(tmp_path, capsys):
    folder, out = make_folder(tmp_path / "in", n=6), tmp_path / "r.jsonl"
    argv = ["batch", str(folder), "--out", str(out), "-m", MODEL, "--steps", "40", "--prompt-len", "4", "-q"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pez", *argv], cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") >= 2:
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"finished before it could be killed: {proc.communicate()[1][-2000:]!r}"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    written = len(lines(out))
    assert 2 <= written < 7, "the kill should land mid-batch"
    assert cli_run([*argv, "--keep-errors"]) == 0  # resume (in-process: same settings; the bad file not retried)
    assert capsys.readouterr().out.startswith(f"7/7 images in {out} ({written} already done")
    recs = by_path(lines(out))
    assert set(recs) == {str(p) for p in batch.find_images([folder])}


def test_accelerate_two_processes_shard_into_one_file(tmp_path):
    """`accelerate launch` with 2 CPU processes: one valid file, every image once, same prompts.
    The only test of sharded batch; needs no GPU (about 30 s on a loaded 2-core machine), so CI runs it."""
    folder = make_folder(tmp_path / "in", n=5)
    args = ["-m", "pez", "batch", str(folder), "-m", MODEL, "--steps", "10", "--prompt-len", "3", "-q", "--out"]
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    subprocess.run([sys.executable, *args, str(one)], cwd=ROOT, env=_env(), check=True, timeout=600)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    done = subprocess.run([*launch, *args, str(two)], cwd=ROOT, env=_env(), timeout=600, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert "2 processes" in done.stdout.decode()
    a = {p: r.get("prompt", r.get("error")) for p, r in by_path(lines(one)).items()}
    b = {p: r.get("prompt", r.get("error")) for p, r in by_path(lines(two)).items()}
    assert a == b and len(a) == 6


def test_gpu_check_smoke_runs_on_cpu():
    env = _env()
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--smoke"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]  # gpu_check exits 1 when a check failed
    assert "FAILED" not in out.stdout, out.stdout
    for line in ("steps", "agreement", "image"):
        assert line in out.stdout, out.stdout


def test_gpu_check_exits_1_when_a_check_fails():
    """Guard: a failing check (here the pez part on a device that cannot run it) is reported and
    makes the script exit 1, so the smoke test above cannot pass on failures."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--smoke", "--only", "pez", "--device", "meta"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    assert "[pez]: FAILED" in out.stdout and "1 check(s) FAILED" in out.stdout, out.stdout
