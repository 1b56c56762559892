"""`pip install .` builds a wheel with both packages, their data files (the toy world's CLIP and
examples, the app's photos and style images), the dependencies, the [app] extra and the `pez`
command. Built from a copy of the sources (no build files left in the checkout), without network."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_holds_both_packages_their_assets_and_the_command(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for package in ("pez", "pez_app"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyi"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("pez-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata, entry_points = z.read(meta).decode(), z.read(meta.replace("METADATA", "entry_points.txt")).decode()
    for path in (
        "pez/__init__.py",
        "pez/cli.py",
        "pez/generate/text_encoder.py",
        "pez/assets/toy_clip/open_clip_model.safetensors",
        "pez/assets/toy_clip/open_clip_config.json",
        "pez/assets/examples/toy_red_circle.png",
        "pez_app/__init__.py",
        "pez_app/__main__.py",
        "pez_app/tabs/image.py",
        "pez_app/assets/photos/cat.jpg",
        "pez_app/assets/style/glass_sea.png",
    ):
        assert path in names, path
    assert not any(n.startswith(("tests/", "bench/", "app.py")) for n in names)
    assert "pez = pez.cli:main" in entry_points
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    for dependency in ("torch", "open_clip_torch", "diffusers", "transformers", "huggingface_hub", "better-profanity"):
        assert any(r.startswith(dependency) for r in requires), dependency
    assert any(r.startswith("gradio") and 'extra == "app"' in r for r in requires)
    assert "Requires-Python: >=3.10" in metadata
