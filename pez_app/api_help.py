"""The in-app "Use it from Python" snippet, with this server's real address and default model."""

from __future__ import annotations

import gradio as gr


def api_help(url: str = "http://127.0.0.1:7860/", model: str = "sd-turbo") -> str:
    return f"""
Every tab is a named endpoint (and an MCP tool, when the server runs with MCP). Search endpoints
stream the prompt as it improves; the status is plain text. `job.result()` returns the last update,
or raises the server's message when the run failed (e.g. a model whose weights are missing).

```python
from gradio_client import Client, handle_file

client = Client("{url}")
job = client.submit(handle_file("cat.jpg"), model="{model}", prompt_len=16, steps=300, api_name="/invert")
for prompt, status, plot, candidates in job:       # live updates; job.cancel() stops
    print(status)
prompt, status, plot, candidates = job.result()    # raises the server's message if the run failed
images, summary = client.predict(prompt, handle_file("cat.jpg"), model="{model}", api_name="/regenerate")
joined = client.predict([handle_file("dog.jpg"), handle_file("beach.jpg")], model="{model}", api_name="/invert_multi")[0]
```

Endpoints: `/invert`, `/invert_multi`, `/concatenate`, `/style`, `/distill`, `/score`, `/regenerate`,
`/regenerate_multi`, `/regenerate_style`, `/regenerate_distill`. Images: `handle_file(path)` (or a
`data:` URL), several as a list. `client.view_api()` lists every parameter.
"""


def api_help_for(request: gr.Request, model: str) -> str:
    """The snippet for the address this page was opened at."""
    url = "http://127.0.0.1:7860/"
    try:
        base = request.request.base_url if hasattr(request, "request") and request.request else None
        url = str(base or getattr(request, "base_url", "") or url)
    except Exception:  # noqa: BLE001 - the default address is a fine fallback
        pass
    return api_help(url if url.endswith("/") else url + "/", model)
