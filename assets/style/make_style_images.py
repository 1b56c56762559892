"""Paint the style-transfer example images: stained-glass mosaics (Voronoi cells with dark leading).

Made for pez and released under CC0, like the images it writes. Deterministic:
    python assets/style/make_style_images.py
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

SIZE = 320
PALETTES = {
    "glass_sunset.png": [(214, 69, 65), (244, 160, 50), (250, 214, 90), (140, 40, 90), (60, 30, 110)],
    "glass_sea.png": [(20, 90, 160), (40, 160, 190), (120, 210, 200), (15, 50, 110), (230, 220, 150)],
    "glass_forest.png": [(40, 120, 60), (110, 170, 70), (200, 190, 80), (90, 60, 40), (30, 70, 50)],
}


def stained_glass(palette, seed: int, size: int = SIZE, cells: int = 70) -> Image.Image:
    rng = np.random.default_rng(seed)
    pts = rng.uniform(0, size, (cells, 2))  # (C, 2) cell centres
    yy, xx = np.mgrid[0:size, 0:size]
    d = (xx[..., None] - pts[:, 0]) ** 2 + (yy[..., None] - pts[:, 1]) ** 2  # (H, W, C)
    order = np.sort(d, axis=-1)
    nearest = d.argmin(-1)  # (H, W) cell index
    edge = np.sqrt(order[..., 1]) - np.sqrt(order[..., 0]) < 3.0  # near a border between two cells
    colours = np.array(palette, float)[rng.integers(len(palette), size=cells)]
    colours *= rng.uniform(0.8, 1.15, (cells, 1))  # glass is uneven
    img = colours[nearest]
    shade = 0.85 + 0.15 * np.sin(xx / 17.0 + yy / 23.0)  # light through the glass
    img = img * shade[..., None]
    img[edge] = (25, 22, 20)  # lead came
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    return pil.filter(ImageFilter.SMOOTH)


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    for i, (name, palette) in enumerate(PALETTES.items()):
        stained_glass(palette, seed=i).save(here / name, optimize=True)
        print("wrote", here / name)
