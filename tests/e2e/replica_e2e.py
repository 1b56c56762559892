"""The Python API and the app on a full-size replica, as a user would run them.

Run by tests/e2e/test_replica.py in a subprocess with HF_HOME pointing at a replica and
HF_HUB_OFFLINE=1 (huggingface_hub reads HF_HOME once, at import), so nothing here knows it is a
replica. Prints one JSON object with what came back; the test checks it. Usage, from the
repository root:

    HF_HOME=DIR HF_HUB_OFFLINE=1 python -m tests.e2e.replica_e2e PAIR IMAGE [--no-app]
"""

from __future__ import annotations

import json
import sys
import time


def api(pair: str, image: str) -> dict:
    import pez
    from pez.models import pair_availability

    avail = pair_availability(pair, timeout=1.0)
    t0 = time.perf_counter()
    res = pez.invert(
        [image], model=pair, config=pez.InvertConfig(steps=2, prompt_len=4, candidates=1, seed=0, refine_steps=3)
    )
    t1 = time.perf_counter()
    gen = pez.regenerate(pair, res.prompt, pez.GenerateConfig(seed=0, steps=1, width=256, height=256), targets=[image])
    t2 = time.perf_counter()
    return {
        "available": [avail.ok, avail.cached, list(avail.missing)],
        "prompt": res.prompt,
        "score": res.score,
        "model": res.model,
        "image_size": list(gen.images[0].size),
        "image_scores": gen.image_scores,
        "seconds": [round(t1 - t0, 1), round(t2 - t1, 1)],
        # the pipeline regenerate() used (cached): its text encoder is the scoring CLIP's own tower?
        "shared_text_encoder": pez.load_generator(pair, text_encoder_of=pez.load_clip(pair)).shared_text_encoder,
    }


def app_calls(pair: str, image: str) -> dict:
    from gradio_client import Client, handle_file

    import app

    demo = app.build_demo()
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **getattr(app, "LAUNCH_KWARGS", {}))
    try:
        client = Client(url, verbose=False)
        img = handle_file(image)
        t0 = time.perf_counter()
        found = client.predict(
            img, model=pair, prompt_len=4, steps=2, candidates=1, seed=0, refine_steps=3, api_name="/invert"
        )
        prompt = found[0] if isinstance(found, (list, tuple)) else found
        t1 = time.perf_counter()
        out = client.predict(prompt, img, model=pair, seed=0, steps=1, num_images=1, api_name="/regenerate")
        gallery = out[0] if isinstance(out, (list, tuple)) else out
        first = gallery[0] if isinstance(gallery, list) and gallery else {}
        path = first.get("image") if isinstance(first, dict) else first
        path = path.get("path") if isinstance(path, dict) else path
        size = None
        if path:
            from PIL import Image

            with Image.open(path) as im:
                size = list(im.size)
        return {
            "prompt": prompt,
            "image_size": size,
            "seconds": [round(t1 - t0, 1), round(time.perf_counter() - t1, 1)],
        }
    finally:
        demo.close()


def main() -> None:
    pair, image = sys.argv[1], sys.argv[2]
    out = {"api": api(pair, image)}
    if "--no-app" not in sys.argv:
        out["app"] = app_calls(pair, image)
    sys.stdout.write("E2E " + json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
