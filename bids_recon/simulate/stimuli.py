"""Stimulus images named as in ds001506: natural-looking scenes, colour shapes and letters."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SHAPES = ("square", "smallring", "largering", "+", "X")
COLOURS = {
    "red": (230, 30, 30),
    "green": (30, 200, 40),
    "blue": (40, 60, 235),
    "yellow": (240, 230, 40),
    "magenta": (225, 40, 225),
    "cyan": (40, 225, 230),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
}
LETTERS = ("A", "C", "E", "I", "N", "O", "R", "S", "T", "U")
BACKGROUND = (128, 128, 128)
SHAPE_SIZE = 120
NATURAL_SIZE = (160, 120)  # width, height: not square, as ImageNet photographs are not


@dataclass(frozen=True)
class Stimulus:
    """One stimulus image: its ds001506-style name, set folder and file extension."""

    name: str
    folder: str
    extension: str


def shape_name(colour: str, shape: str) -> str:
    """ds001506 name of a colour shape: 5 shapes within 8 colours, numbered 01-40."""
    number = list(COLOURS).index(colour) * len(SHAPES) + SHAPES.index(shape) + 1
    return f"colorExpStim{number:02d}_{colour}_{shape}"


def letter_name(letter: str) -> str:
    """ds001506 name of a letter image (``letter_black_img011_A`` ...)."""
    return f"letter_black_img{10 + ord(letter) - ord('A') + 1:03d}_{letter}"


def render_shape(colour: str, shape: str) -> Image.Image:
    """A colour shape on grey, like the artificial-image stimuli."""
    image = Image.new("RGB", (SHAPE_SIZE, SHAPE_SIZE), BACKGROUND)
    draw = ImageDraw.Draw(image)
    fill = COLOURS[colour]
    c = SHAPE_SIZE // 2
    if shape == "square":
        draw.rectangle([c - 30, c - 30, c + 30, c + 30], fill=fill)
    elif shape == "smallring":
        draw.rectangle([c - 24, c - 24, c + 24, c + 24], outline=fill, width=8)
    elif shape == "largering":
        draw.rectangle([c - 48, c - 48, c + 48, c + 48], outline=fill, width=8)
    elif shape == "+":
        draw.rectangle([c - 40, c - 6, c + 40, c + 6], fill=fill)
        draw.rectangle([c - 6, c - 40, c + 6, c + 40], fill=fill)
    else:  # X
        draw.line([c - 36, c - 36, c + 36, c + 36], fill=fill, width=12)
        draw.line([c - 36, c + 36, c + 36, c - 36], fill=fill, width=12)
    return image


def render_letter(letter: str) -> Image.Image:
    """A black capital letter on grey, like the letter stimuli."""
    image = Image.new("RGB", (SHAPE_SIZE, SHAPE_SIZE), BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=90)
    draw.text((SHAPE_SIZE / 2, SHAPE_SIZE / 2), letter, fill=(0, 0, 0), font=font, anchor="mm")
    return image


def _pink_noise(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Noise with a 1/f amplitude spectrum, scaled to [-1, 1]: natural-image-like texture."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.fftfreq(width)[None, :]
    amplitude = 1.0 / np.maximum(np.hypot(fx, fy), 1.0 / max(height, width))
    phase = rng.uniform(0, 2 * np.pi, (height, width))
    field = np.real(np.fft.ifft2(amplitude * np.exp(1j * phase)))
    return field / np.abs(field).max()


def render_natural(category_seed: int, image_seed: int) -> Image.Image:
    """A natural-looking scene: sky/ground gradient, textured objects in category colours.

    Images of one category (same ``category_seed``) share palette and object type, so the
    categories have visual structure, while ``image_seed`` varies layout and texture.
    """
    cat = np.random.default_rng(category_seed)
    rng = np.random.default_rng([category_seed, image_seed])
    width, height = NATURAL_SIZE
    palette = cat.integers(20, 236, size=(3, 3))
    kind = int(cat.integers(0, 3))
    horizon = rng.uniform(0.35, 0.7) * height
    rows = np.arange(height)[:, None, None]
    sky = palette[0] + (rows / height) * 40
    ground = palette[1] * 0.8 + rng.normal(0, 8, 3)
    canvas = np.where(rows < horizon, sky, ground) * np.ones((1, width, 1))
    canvas += 35 * _pink_noise(rng, height, width)[..., None]
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(1, 4))):
        cx, cy = rng.uniform(0.2, 0.8) * width, rng.uniform(0.25, 0.8) * height
        rx, ry = rng.uniform(12, 40), rng.uniform(12, 40)
        colour = tuple(int(v) for v in np.clip(palette[2] + rng.normal(0, 20, 3), 0, 255))
        box = [cx - rx, cy - ry, cx + rx, cy + ry]
        if kind == 0:
            draw.ellipse(box, fill=colour)
        elif kind == 1:
            draw.rectangle(box, fill=colour)
        else:
            draw.polygon([(cx, cy - ry), (cx - rx, cy + ry), (cx + rx, cy + ry)], fill=colour)
    return image.filter(ImageFilter.GaussianBlur(1.2))


def save_image(image: Image.Image, path, extension: str) -> None:
    """Save as JPEG (natural images, ImageNet's ``.JPEG``) or PNG, without varying metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if extension.lower() in (".jpeg", ".jpg"):
        image.save(path, format="JPEG", quality=92)
    else:
        image.save(path, format="PNG")
