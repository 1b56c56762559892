"""The build's package list (the rest of the metadata is in pyproject.toml).

Both packages, pez (the core) and pez_app (the app), and the data files: they live once, in the
repository's top-level assets/ folder (the toy CLIP and its example shapes, the app's example
photos and style images), and the wheel carries that folder as pez/assets/, where
pez.paths.assets_dir() finds it in an installed copy. pyproject.toml cannot map a folder outside
the packages on its own (its package finder does not see the mapped name), hence these few lines.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["pez", "pez.*", "pez_app", "pez_app.*"]), "pez.assets"],
    package_dir={"pez.assets": "assets"},
    package_data={"pez.assets": ["**/*"]},
    exclude_package_data={"pez.assets": ["**/__pycache__/*"]},
)
