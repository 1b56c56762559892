"""Where pez's data files are: one `assets/` folder (the toy CLIP, example images, style images).

In a checkout (or an editable install) it is the repository's top-level `assets/`; in an installed
wheel it is `pez/assets/`, where setup.py maps that folder at build time.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def assets_dir() -> Path:
    """The assets folder: inside the installed package when there (a wheel), else the checkout's."""
    packaged = _PACKAGE / "assets"
    return packaged if packaged.is_dir() else _PACKAGE.parent / "assets"


def asset_path(*parts: str) -> Path:
    """A path under the assets folder, e.g. asset_path("photos", "cat.jpg")."""
    return assets_dir().joinpath(*parts)


__all__ = ["asset_path", "assets_dir"]
