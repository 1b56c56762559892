"""Load test: N concurrent sessions against the app, each with its own image and seed.

    python scripts/load_test.py                          # 8 sessions, in-process server on 127.0.0.1
    python scripts/load_test.py --sessions 16 --steps 50 --model toy
    python scripts/load_test.py --url http://127.0.0.1:7860/   # a server you started (python app.py)

Each session is a separate gradio_client.Client (its own session) that streams `/invert` for a
distinct noise image with a distinct seed. Before the load, the expected best prompt of every
(image, seed) is computed with the core API, step by step; a session passes when its final
prompt is its own expected one, every prompt it was streamed is one its own run produced, and
its status names its own seed. So a session that saw another's image or prompt fails. The
server must also still answer afterwards. Everything is bounded by --timeout; the script stops
by itself and exits 0 only if every session passed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Session:
    index: int
    image: str
    seed: int
    expected: str = ""  # the core's final best prompt for this image and seed
    allowed: set[str] = field(default_factory=set)  # every best-so-far prompt of that run
    prompts: list[str] = field(default_factory=list)  # what this session was streamed
    final: str = ""
    status: str = ""
    error: str = ""
    submitted: float = 0.0
    first_update: float | None = None  # seconds after submit (time spent queued + loading)
    finished: float | None = None  # seconds after submit

    @property
    def problems(self) -> list[str]:
        out = []
        if self.error:
            out.append(f"error: {self.error}")
        elif self.finished is None:
            out.append("did not finish")
        else:
            if self.final != self.expected:
                out.append(f"final prompt {self.final!r} is not its own {self.expected!r}")
            foreign = [p for p in self.prompts if p and p not in self.allowed]
            if foreign:
                out.append(f"streamed prompts from another run: {foreign[:3]}")
            if f"seed {self.seed}" not in self.status:
                out.append("status does not name its own seed")
        return out


@dataclass
class LoadReport:
    sessions: list[Session]
    wall: float
    server_alive: bool

    @property
    def ok(self) -> bool:
        return self.server_alive and all(not s.problems for s in self.sessions)

    def table(self) -> str:
        rows = [f"{'#':>2} {'seed':>5} {'queued+load':>11} {'total':>7} {'updates':>7}  result"]
        for s in self.sessions:
            first = f"{s.first_update:.1f}s" if s.first_update is not None else "-"
            total = f"{s.finished:.1f}s" if s.finished is not None else "-"
            result = "; ".join(s.problems) or f"ok: {s.final!r}"
            rows.append(f"{s.index:>2} {s.seed:>5} {first:>11} {total:>7} {len(s.prompts):>7}  {result}")
        passed = sum(not s.problems for s in self.sessions)
        rows.append(
            f"{passed}/{len(self.sessions)} sessions passed in {self.wall:.1f}s; "
            f"server {'still answers' if self.server_alive else 'DID NOT ANSWER afterwards'}"
        )
        return "\n".join(rows)


def make_sessions(n: int, folder: Path, base_seed: int = 100) -> list[Session]:
    import numpy as np
    from PIL import Image

    sessions = []
    for i in range(n):
        path = folder / f"session{i}.png"
        pixels = np.random.default_rng(base_seed + i).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path)
        sessions.append(Session(i, str(path), base_seed + i))
    return sessions


def expect(sessions: list[Session], model: str, steps: int, prompt_len: int) -> None:
    """The core's answer for each (image, seed), with every best-so-far prompt along the way."""
    import pez
    import pez.testing  # noqa: F401  registers "random:tiny", this script's default model

    clip = pez.load_clip(model, device="cpu")
    for s in sessions:
        # The app's report_every (the default): which prompts get honestly re-scored, and so the
        # best one, depends on it; every report the app can stream is one of these.
        cfg = pez.InvertConfig(prompt_len=prompt_len, steps=steps, seed=s.seed)
        for rep in pez.invert_stream([s.image], clip, cfg):
            s.allowed.add(rep.best_prompt)
        s.expected = rep.result.prompt
        s.allowed.add(s.expected)


def run_session(url: str, s: Session, settings: dict, deadline: float) -> None:
    from gradio_client import Client, handle_file

    try:
        client = Client(url, verbose=False)  # one client = one session
        s.submitted = time.monotonic()
        job = client.submit(handle_file(s.image), **settings, seed=s.seed, api_name="/invert")
        seen = 0
        while time.monotonic() < deadline:
            outputs = job.outputs()
            if len(outputs) > seen and s.first_update is None:
                s.first_update = time.monotonic() - s.submitted
            seen = len(outputs)
            if job.done():
                break
            time.sleep(0.05)
        else:
            job.cancel()
            s.error = "timed out"
            return
        job.result()  # raises the app's error, if any
        outputs = job.outputs()
        s.prompts = [o[0] for o in outputs if isinstance(o, (list, tuple)) and isinstance(o[0], str)]
        s.final, s.status = outputs[-1][0], outputs[-1][1]
        s.finished = time.monotonic() - s.submitted
    except Exception as e:  # reported per session; the test decides
        s.error = f"{type(e).__name__}: {e}"


def run_load_test(
    sessions: int = 8,
    steps: int = 30,
    prompt_len: int = 4,
    model: str = "random:tiny",
    timeout: float = 300.0,
    url: str | None = None,
) -> LoadReport:
    """Start the app in-process on 127.0.0.1 (unless `url` is given), run the sessions at once,
    check each got its own result, close the server. Bounded by `timeout` seconds."""
    start = time.monotonic()
    deadline = start + timeout
    with tempfile.TemporaryDirectory(prefix="pez-load-") as tmp:
        todo = make_sessions(sessions, Path(tmp))
        expect(todo, model, steps, prompt_len)
        demo = None
        if url is None:
            from pez_app import build_demo

            # The in-process server is this script's own: as its operator, offer the model under
            # test (a public server takes only its listed pairs, PEZ_EXTRA_MODELS adds others).
            before = os.environ.get("PEZ_EXTRA_MODELS")
            os.environ["PEZ_EXTRA_MODELS"] = ",".join(filter(None, [before, model]))
            try:
                demo = build_demo()
            finally:
                if before is None:
                    del os.environ["PEZ_EXTRA_MODELS"]
                else:
                    os.environ["PEZ_EXTRA_MODELS"] = before
            _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1")
        try:
            # No time budget (the app's default on a CPU has one): a budgeted run depends on the
            # machine's speed, and each session's result must be the one the core computed.
            settings = dict(model=model, prompt_len=prompt_len, steps=steps, candidates=1, time_budget=0)
            threads = [threading.Thread(target=run_session, args=(url, s, settings, deadline)) for s in todo]
            for t in threads:
                t.start()
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()) + 5)
            alive = _still_answers(url, todo[0], settings, deadline + 30)
        finally:
            if demo is not None:
                demo.close()
    return LoadReport(todo, time.monotonic() - start, alive)


def _still_answers(url: str, s: Session, settings: dict, deadline: float) -> bool:
    probe = Session(-1, s.image, s.seed, s.expected, s.allowed)
    run_session(url, probe, {**settings, "steps": 2}, deadline)
    return not probe.error and probe.finished is not None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=8)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--prompt-len", type=int, default=4)
    p.add_argument("--model", default="random:tiny", help="toy, random:tiny or any spec the server can load")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds for the whole test")
    p.add_argument("--url", default=None, help="test a running server instead of an in-process one")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    report = run_load_test(args.sessions, args.steps, args.prompt_len, args.model, args.timeout, args.url)
    print(report.table())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
