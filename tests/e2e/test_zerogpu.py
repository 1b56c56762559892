"""The app on a simulated ZeroGPU Space: the real `spaces` package under SPACES_ZERO_GPU=1 with a fake
device API on the loopback, the toy world as the start-up pair (tests/e2e/zerogpu_sim.py, in its
own process). Exercised for real: the import-time patching of torch, the start-up pair moved to
`cuda` at import and packed, the GPU decorator on every model handler, the duration each call
reserves (as the device API receives it), quota and worker-start errors, and handlers running in
forked GPU workers (streamed updates pickled back, Stop from the main process, a killed worker,
a worker reused while idle). Not exercised: CUDA itself (a worker's CUDA start and the move of the
packed weights to the GPU are no-ops in the second phase) - see the README's ZeroGPU checklist.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_app_on_a_simulated_zero_gpu_space(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    for name in ("SPACES_ZERO_GPU", "PEZ_DEVICE", "PEZ_COMPILE"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "e2e" / "zerogpu_sim.py"), str(tmp_path / "offload")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("SIM ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    out = json.loads(lines[-1][4:])

    # Import: spaces active, the start-up pair on (emulated) cuda, recorded and packed; no compile.
    assert out["zero_gpu"] and out["preloaded"] == ["toy"]
    assert out["clip_device"] == "cuda" and out["params_on_cuda"] and out["params_recorded"] == 1.0
    assert out["packed_bytes"] > 1_000_000 and out["compile"] is False
    assert out["gpu_functions"] == 7  # 5 searches, the regeneration, the score

    # Errors from the spaces package, reworded.
    assert out["quota"]["title"] == "ZeroGPU quota exceeded" and "used up" in out["quota"]["message"]
    assert (
        out["worker_start"]["title"] == "ZeroGPU worker error" and "GPU worker failed" in out["worker_start"]["message"]
    )

    # Durations: what the device API received is what the request needs (not a fixed 120 s).
    assert out["durations"][0] == out["expected_seconds"] < 60
    assert len(set(out["durations"])) > 1

    # Searches in a GPU worker: streamed, the record kept in the main process.
    run = out["run"]
    assert run["updates"] >= 3 and run["status"].startswith("Done after 40 steps") and run["prompt"]
    assert run["record"]["done"] and run["record"]["prompt"] == run["prompt"]
    stop = out["stop"]
    assert stop["status"].startswith("Stopped at step") and "best prompt kept" in stop["status"]
    assert stop["record"]["stopped"] and stop["record"]["prompt"]
    assert out["worker_reused"]  # the stopped worker went back to idle and served the next call
    abort = out["abort"]
    assert "the GPU run was aborted" in abort["status"] and abort["record"]["prompt"] and abort["record"]["stopped"]

    limited = out["time_limit"]
    assert (
        limited["status"].startswith("Done after") and "(ended at the server's time limit (2 s))" in limited["status"]
    )
    assert not limited["record"]["stopped"] and limited["record"]["prompt"] and limited["record"]["steps_run"] < 3000

    # Plain GPU functions: the regeneration (images pickled back, scored) and the score.
    assert out["regenerate"]["images"] == 2 and len(out["regenerate"]["scores"]) == 2
    assert out["regenerate"]["stopped"] == ""  # the server's time limit did not stop it
    assert "Score of this prompt" in out["score"]
    assert out["regenerate_handler"]["images"] == 1 and "1 image in" in out["regenerate_handler"]["summary"]
    assert out["calls"].count("/allow") >= 2 and out["calls"].count("/release") >= 5
