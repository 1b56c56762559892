"""A ZeroGPU Space simulated on this machine, for tests/e2e/test_zerogpu.py (run as a script).

The real `spaces` package (0.51.3) under SPACES_ZERO_GPU=1, talking to a fake device API on the
loopback (what the Space's host provides: /schedule, /allow, /release), with the toy world as the
start-up pair. Two CUDA-only steps cannot run here: a GPU worker's start (`torch.init`, which makes
a CUDA tensor) and the move of the packed weights to the GPU (`torch.move`). The first phase runs
them as they are (the worker fails to start: a ZeroGPU worker error); the second replaces those two
with no-ops, so the handlers run in real forked GPU workers on the CPU. Prints one JSON line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlparse

CALLS: list[tuple[str, dict]] = []
SCHEDULE = {"answer": "quota"}  # quota | ok


class DeviceApi(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        url = urlparse(self.path)
        CALLS.append((url.path, {k: v[0] for k, v in parse_qs(url.query).items()}))
        code, body = 200, {}
        if url.path == "/schedule" and SCHEDULE["answer"] == "quota":
            code, body = 429, {"left": 7, "wait": "PT2M"}  # spaces.zero.api.QuotaInfos
        elif url.path == "/schedule":
            body = {"idle": True, "nvidiaIndex": 0, "nvidiaUUID": "GPU-sim", "allowToken": "token"}
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def durations() -> list[int]:
    return [int(q["durationSeconds"]) for path, q in CALLS if path == "/schedule"]


def main(offload_dir: str) -> dict:
    server = HTTPServer(("127.0.0.1", 0), DeviceApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    os.environ.update(
        SPACES_ZERO_GPU="1",
        SPACES_ZERO_DEVICE_API_URL=f"http://127.0.0.1:{server.server_port}",
        ZEROGPU_OFFLOAD_DIR=offload_dir,
        PEZ_OFFLINE_DEMO="1",
    )
    # spaces first, as on a Space: it patches torch before anything touches CUDA
    import spaces  # noqa: F401, I001
    import spaces.zero.torch as zero_torch
    from spaces.zero.decorator import decorated_cache
    from spaces.zero.torch import patching

    import gradio as gr
    import psutil

    import app  # noqa: F401 - the Space's entry: builds the demo at import, as the Space does
    import pez
    from pez.engine import accel
    from pez_app import progress, regenerate, zerogpu
    from pez_app import server as srv

    out: dict = {"zero_gpu": srv.ZERO_GPU, "preloaded": sorted(zerogpu.PRELOADED)}
    settings, start = app.demo.pez.settings, app.demo.pez.start
    clip = pez.load_clip("toy", device=settings.device)  # the preloaded one (cached)
    params = list(clip.model.parameters())
    out["clip_device"] = str(clip.device)
    out["params_on_cuda"] = all(p.device.type == "cuda" for p in params)
    out["params_recorded"] = sum(p in patching.cuda_aliases for p in params) / len(params)
    out["compile"] = accel.compile_enabled(clip.device)
    out["gpu_functions"] = len({id(fn) for fn in decorated_cache.values()})
    # Demos built with other settings (each carries its own: the handlers run in workers on the
    # CPU; a 2 s time limit), before the pack, as every GPU function of a Space is made at start-up.
    on_cpu = app.build_demo(dataclasses.replace(settings, device="cpu"), start=start)
    limited = app.build_demo(
        dataclasses.replace(on_cpu.pez.settings, limits=dataclasses.replace(settings.limits, max_run_seconds=2.0)),
        start=start,
    )
    draw_on_gpu = on_cpu.pez.pipeline.draw_on_gpu()
    out["packed_bytes"] = patching.pack()  # what the spaces package does at launch

    target = str(pez.toy.EXAMPLES_DIR / "toy_red_circle.png")

    def search(demo=app.demo, **kw):
        control = progress.RunControl()
        progress.arm_run(control)
        return demo.pez.endpoints["invert"](target, model="toy", control=control, **kw), control

    def error_of(fn) -> dict:
        try:
            fn()
        except gr.Error as e:
            return {"title": e.title, "message": str(e.message)}
        return {}

    # Phase 1: the real worker start (fails here: no CUDA), after a quota refusal.
    out["quota"] = error_of(lambda: list(search(steps=30)[0]))
    SCHEDULE["answer"] = "ok"
    out["worker_start"] = error_of(lambda: list(search(steps=30)[0]))
    out["expected_seconds"] = zerogpu.search_seconds((target, None, "", 1.0), "toy", pez.InvertConfig(steps=30))

    # Phase 2: workers that start without CUDA; the handlers run in them, on the CPU.
    zero_torch.init = lambda nvidia_uuid: None
    zero_torch.move = lambda callback=None: None
    stream, control = search(on_cpu, steps=40, seed=1)
    updates = list(stream)
    out["run"] = {"updates": len(updates), "status": updates[-1][1], "prompt": updates[-1][0], "record": control.record}
    workers = [p.pid for p in psutil.Process().children()]

    stream, control = search(on_cpu, steps=3000, patience=0, seed=2)
    for n, update in enumerate(stream, 1):
        if n == 3:
            control.stop_at = time.monotonic()  # Stop, pressed in the main process
    out["stop"] = {"updates": n, "status": update[1], "record": control.record}
    out["worker_reused"] = [p.pid for p in psutil.Process().children()] == workers and len(workers) == 1

    stream, control = search(on_cpu, steps=3000, patience=0, seed=3)
    for n, update in enumerate(stream, 1):
        if n == 3:
            for child in psutil.Process().children():
                os.kill(child.pid, signal.SIGKILL)  # the GPU worker dies (as when its time runs out)
    out["abort"] = {"updates": n, "status": update[1], "record": control.record}

    # the server's time limit: the run's time budget, planned in the worker (search, then polish)
    stream, control = search(limited, steps=3000, patience=0, seed=4, time_budget=0.0)
    update = list(stream)[-1]
    out["time_limit"] = {"status": update[1], "record": control.record}

    draws = [[regenerate.Draw("a red circle", [target])]]  # a plain (not streaming) GPU function
    results, stopped = draw_on_gpu(draws, "toy", pez.GenerateConfig(num_images=2))
    out["regenerate"] = {"images": len(results[0][0].images), "scores": results[0][0].image_scores, "stopped": stopped}
    out["score"] = on_cpu.pez.endpoints["score"]("a red circle", target, "toy")
    gallery, summary = on_cpu.pez.endpoints["regenerate"](
        "a red circle", target, model="toy", num_images=1
    )  # with gr.Progress
    out["regenerate_handler"] = {"images": len(gallery), "summary": summary}
    out["durations"] = durations()
    out["calls"] = [path for path, _ in CALLS]
    return out


if __name__ == "__main__":
    print("SIM " + json.dumps(main(sys.argv[1]), default=str), flush=True)
