"""The README's newcomer paths (issue 24, items 6 and 14), checked offline.

Before: the quick start pulled CUDA torch and never installed pez (no `pez` command), and the
Python API example used real models only (it failed offline). The gradio_client example's
offline variant needs a running server: it was checked by hand against `python app.py
--offline-demo` (see the issue's note)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    """The README's text from the heading `title` to the next heading of the same level."""
    level = title.split(" ", 1)[0]
    start = README.index(f"\n{title}\n")
    end = README.find(f"\n{level} ", start + len(title) + 2)
    return README[start : end if end != -1 else None]


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def requirement_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        m = re.match(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s#]+)", line.strip())
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def test_quick_start_gets_cpu_torch_at_the_pinned_versions_then_installs_pez():
    commands = blocks(section("## Quick start"), "bash")[0]
    lines = [line.split("#", 1)[0].strip() for line in commands.splitlines()]
    lines = [line for line in lines if line]
    cpu = next(i for i, line in enumerate(lines) if "download.pytorch.org/whl/cpu" in line)
    reqs = next(i for i, line in enumerate(lines) if line.startswith("pip install -r requirements.txt"))
    pez = next(i for i, line in enumerate(lines) if re.fullmatch(r"pip install (-e )?\.(\[app\])?", line))
    assert cpu < reqs < pez < lines.index("python app.py")
    # pip keeps the CPU build only when its versions are the ones requirements.txt pins
    typed = dict(re.findall(r"(torch|torchvision)==(\S+)", lines[cpu]))
    pins = requirement_pins()
    assert typed == {"torch": pins["torch"], "torchvision": pins["torchvision"]}


def test_the_quick_start_cli_lines_use_files_that_ship_with_pez():
    lines = [line for block in blocks(section("## Quick start"), "bash") for line in block.splitlines()]
    cli = [line for line in lines if line.startswith("pez invert")]
    assert cli, "the quick start shows no offline CLI run"
    for line in cli:
        assert "--model toy" in line and (ROOT / line.split()[2]).is_file(), line


def test_the_offline_python_example_runs_from_any_folder(tmp_path, monkeypatch, capsys):
    offline, real = blocks(section("## Python API"), "python")[:2]
    assert 'model="toy"' in offline and "sd-turbo" in real  # the real-model example is kept
    monkeypatch.chdir(tmp_path)  # nothing from the checkout's folder
    exec(compile(offline, "README.md (Python API, offline)", "exec"), {})  # noqa: S102 - the documented example
    out = capsys.readouterr().out.splitlines()
    assert len(out) >= 2 and out[0].strip()  # the prompt and score, then progress lines


def test_the_client_example_has_an_offline_variant():
    examples = blocks(section("### API and MCP"), "python")
    assert "sd-turbo" in examples[0]  # the documented real-model example stays first (tests/app read it)
    offline = next(b for b in examples[1:] if "from gradio_client import" in b)
    assert 'model="toy"' in offline and "--offline-demo" in section("### API and MCP")
