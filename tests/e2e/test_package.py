"""`pip install .` builds a wheel with both packages, the data files of the top-level assets/ folder
as pez/assets/ (the toy world's CLIP and examples, the app's photos and style images), the dependencies, the [app] extra and the `pez`
command. Built from a copy of the sources (no build files left in the checkout), without network.
Installed into a venv, the command and the app run from any folder on the files in site-packages."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp_path = tmp_path_factory.mktemp("wheel")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for folder in ("pez", "pez_app", "assets"):
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyi"))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (built,) = tmp_path.glob("pez-*.whl")
    return built


def test_wheel_holds_both_packages_their_assets_and_the_command(wheel):
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
        "pez/assets/photos/cat.jpg",  # the top-level assets/ folder, mapped into the package (setup.py)
        "pez/assets/style/glass_sea.png",
    ):
        assert path in names, path
    assert not any(n.startswith(("tests/", "bench/", "app.py", "assets/", "pez_app/assets/")) for n in names)
    assert "pez = pez.cli:main" in entry_points
    assert "app = pez_app.main:main" in entry_points  # `pez app` finds the app through it (pez never imports it)
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    # Every runtime requirement (requirements.txt, gradio aside: the [app] extra) is declared.
    pinned = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    required = [re.split(r"[\[=<>]", line)[0].lower() for line in pinned if line]
    for dependency in (n for n in required if n != "gradio"):
        assert any(r.lower().startswith(dependency) for r in requires), dependency
    assert any(r.startswith("gradio") and 'extra == "app"' in r for r in requires)
    assert "Requires-Python: >=3.10" in metadata


@pytest.mark.slow
def test_installed_wheel_runs_from_any_folder(wheel, tmp_path):
    """As a user meets it: the wheel installed in a venv (the dependencies from this interpreter's
    site-packages), `pez models`, a toy inversion of an example from site-packages and the app's
    flags, all run from a folder outside the checkout, so `import pez` can only find the install."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    python, pez = venv / "bin" / "python", venv / "bin" / "pez"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)

    def run(*args: str) -> str:
        done = subprocess.run(args, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    where = run(
        str(python),
        "-c",
        "import pez, pez_app, pez.toy as t, pez.paths as p; print(pez.__file__, pez_app.__file__, t.EXAMPLES_DIR, "
        "p.asset_path('photos', 'cat.jpg'))",
    )
    site = str(venv / "lib")
    assert all(path.startswith(site) for path in where.split()), where
    assert "toy" in run(str(pez), "models")
    example = venv.glob("lib/python*/site-packages/pez/assets/examples/toy_red_circle.png")
    out = run(str(pez), "invert", str(next(example)), "--model", "toy", "--steps", "5", "--seed", "0")
    assert "# score" in out and "model toy" in out
    assert "--offline-demo" in run(str(python), "-m", "pez_app", "--help")
    assert "--offline-demo" in run(str(pez), "app", "--help")
