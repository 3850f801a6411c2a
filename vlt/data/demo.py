"""Deterministic offline demo data: rendered shapes with captions that describe them.

Each image shows one or two flat shapes (circle, square, triangle, diamond) in
one of six colours and two sizes on a grey background. Two shapes stand in a
clear spatial relation (left of / right of / above / below: they are separated
along that axis by more than their sizes and offset less across it); a single
shape sits in a named place (left, right, top, bottom, middle). Each image gets
five captions in different wordings (synonyms, word order, the inverse
relation), all true of the image, so MLM/ITM/retrieval/captioning have
something grounded to learn.

Files use the COCO Karpathy arrow layout (``coco_caption_karpathy_{train,
restval,val,test}.arrow``: image (PNG bytes), caption (list of str), image_id,
split), so every caption task can read them. Every sample is a pure function of
(seed, split, index, image_size): the same arguments give byte-identical files.

``python data_prep/write_demo.py ARROW_DIR`` writes them from the command line.
"""
from __future__ import annotations

import io
import os
import random
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from PIL import Image, ImageDraw

from vlt.data.arrow_io import AtomicArrowWriter

PREFIX = "coco_caption_karpathy"
SPLITS = ("train", "restval", "val", "test")
CAPTIONS_PER_IMAGE = 5

COLORS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 90, 225),
    "yellow": (240, 215, 40),
    "purple": (150, 60, 190),
    "orange": (245, 140, 30),
}
SHAPES = ("circle", "square", "triangle", "diamond")
SIZE_WORDS = {"small": ("small", "little"), "large": ("large", "big")}
SIZE_FRACTION = {"small": 0.11, "large": 0.2}  # half extent of a shape / image size
BACKGROUNDS = ((70, 70, 70), (105, 105, 105), (135, 135, 135), (165, 165, 165))
INVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
LONG_RELATION = {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below"}
# Where a lone shape's centre may fall, as fractions of the image: (x0, x1, y0, y1).
LOCATIONS = {
    "on the left": (0.0, 0.33, 0.3, 0.7),
    "on the right": (0.67, 1.0, 0.3, 0.7),
    "at the top": (0.3, 0.7, 0.0, 0.33),
    "at the bottom": (0.3, 0.7, 0.67, 1.0),
    "in the middle": (0.4, 0.6, 0.4, 0.6),
}
SINGLE_TEMPLATES = (
    "{a_s} {s} {c} {k}",
    "{a_c} {c} {k} {loc}",
    "there is {a_s} {s} {c} {k} {loc}",
    "an image of one {c} {k}",
    "{a_s} {s} {k} that is {c}",
    "the {k} {loc} is {c}",
)
PAIR_TEMPLATES = (
    "{a_sA} {sA} {cA} {kA} {rel} {a_sB} {sB} {cB} {kB}",
    "{a_cA} {cA} {kA} {rel_long} {a_cB} {cB} {kB}",
    "{a_sB} {sB} {cB} {kB} {inv} {a_sA} {sA} {cA} {kA}",
    "there is {a_cA} {cA} {kA} {rel} the {cB} {kB}",
    "the {cB} {kB} is {inv_long} the {cA} {kA}",
    "an image of {a_sA} {sA} {cA} {kA} and {a_sB} {sB} {cB} {kB}",
)
PAIR_FRACTION = 0.7  # share of images with two shapes
MARGIN = 1

CAPTION_SCHEMA = pa.schema(
    [
        ("image", pa.binary()),
        ("caption", pa.list_(pa.string())),
        ("image_id", pa.string()),
        ("split", pa.string()),
    ]
)


@dataclass(frozen=True)
class Shape:
    kind: str
    color: str
    size: str  # "small" | "large"
    cx: int
    cy: int
    half: int  # half extent in pixels


@dataclass(frozen=True)
class Scene:
    shapes: tuple  # one or two Shape; with two, shapes[0] <relation> shapes[1]
    relation: str | None
    location: str | None  # where the single shape is
    background: tuple


@dataclass(frozen=True)
class DemoSample:
    image: Image.Image
    captions: list
    scene: Scene
    image_id: str


# --------------------------------------------------------------------------- scenes
def _half(size: str, image_size: int) -> int:
    return max(2, round(SIZE_FRACTION[size] * image_size))


def _span(lo_frac: float, hi_frac: float, half: int, image_size: int) -> tuple[int, int]:
    """Integer range of centres inside the fraction range that keep the shape in the image."""
    lo, hi = half + MARGIN, image_size - 1 - half - MARGIN
    a, b = max(lo, round(lo_frac * image_size)), min(hi, round(hi_frac * image_size))
    return (a, b) if a <= b else (min(a, hi), min(a, hi))


def _single_scene(rng: random.Random, image_size: int, background) -> Scene:
    kind, color, size = rng.choice(SHAPES), rng.choice(list(COLORS)), rng.choice(list(SIZE_WORDS))
    location = rng.choice(list(LOCATIONS))
    half = _half(size, image_size)
    x0, x1, y0, y1 = LOCATIONS[location]
    cx, cy = rng.randint(*_span(x0, x1, half, image_size)), rng.randint(*_span(y0, y1, half, image_size))
    return Scene((Shape(kind, color, size, cx, cy, half),), None, location, background)


def _pair_positions(rng: random.Random, halves: tuple[int, int], image_size: int) -> tuple[tuple, tuple] | None:
    """Axis and cross coordinates (first, second) with first < second along the axis, or None if they do not fit."""
    h1, h2 = halves
    lo, hi = h1 + MARGIN, image_size - 1 - h2 - MARGIN
    gap = h1 + h2 + 2
    if hi - gap < lo:
        return None
    a = rng.randint(lo, hi - gap)
    b = rng.randint(a + gap, hi)
    spread = (b - a) // 2  # cross-axis offset stays below half the axis distance
    ca = rng.randint(h1 + MARGIN, image_size - 1 - h1 - MARGIN)
    cb_lo, cb_hi = max(h2 + MARGIN, ca - spread), min(image_size - 1 - h2 - MARGIN, ca + spread)
    cb = rng.randint(cb_lo, cb_hi) if cb_lo <= cb_hi else ca
    return (a, ca), (b, cb)


def _pair_scene(rng: random.Random, image_size: int, background) -> Scene:
    colors = list(COLORS)
    while True:
        first = (rng.choice(SHAPES), rng.choice(colors))
        second = (rng.choice(SHAPES), rng.choice(colors))
        if first != second:
            break
    sizes = [rng.choice(list(SIZE_WORDS)), rng.choice(list(SIZE_WORDS))]
    relation = rng.choice(list(INVERSE))
    # "left of"/"above": shape A comes first along the axis; otherwise it comes second.
    a_first = relation in ("left of", "above")
    order = (0, 1) if a_first else (1, 0)
    placed = _pair_positions(rng, tuple(_half(sizes[i], image_size) for i in order), image_size)
    if placed is None:  # too small an image for these sizes: fall back to small shapes
        sizes = ["small", "small"]
        placed = _pair_positions(rng, (_half("small", image_size),) * 2, image_size)
        if placed is None:
            raise ValueError(f"image_size={image_size} is too small for two shapes")
    horizontal = relation in ("left of", "right of")
    shapes = [None, None]
    for slot, (along, across) in zip(order, placed):
        cx, cy = (along, across) if horizontal else (across, along)
        kind, color = (first, second)[slot]
        shapes[slot] = Shape(kind, color, sizes[slot], cx, cy, _half(sizes[slot], image_size))
    return Scene(tuple(shapes), relation, None, background)


def make_scene(rng: random.Random, image_size: int = 64) -> Scene:
    """A random scene of one or two shapes."""
    background = rng.choice(BACKGROUNDS)
    if rng.random() < PAIR_FRACTION:
        return _pair_scene(rng, image_size, background)
    return _single_scene(rng, image_size, background)


def render_scene(scene: Scene, image_size: int = 64) -> Image.Image:
    """Draw ``scene`` (no anti-aliasing: every shape pixel has its exact colour)."""
    image = Image.new("RGB", (image_size, image_size), scene.background)
    draw = ImageDraw.Draw(image)
    for s in scene.shapes:
        fill = COLORS[s.color]
        box = [s.cx - s.half, s.cy - s.half, s.cx + s.half, s.cy + s.half]
        top, bottom, left, right = s.cy - s.half, s.cy + s.half, s.cx - s.half, s.cx + s.half
        if s.kind == "circle":
            draw.ellipse(box, fill=fill)
        elif s.kind == "square":
            draw.rectangle(box, fill=fill)
        elif s.kind == "triangle":
            draw.polygon([(s.cx, top), (right, bottom), (left, bottom)], fill=fill)
        else:  # diamond
            draw.polygon([(s.cx, top), (right, s.cy), (s.cx, bottom), (left, s.cy)], fill=fill)
    return image


# --------------------------------------------------------------------------- captions
def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _shape_words(shape: Shape, rng: random.Random, tag: str = "") -> dict:
    size_word = rng.choice(SIZE_WORDS[shape.size])
    return {
        f"s{tag}": size_word, f"c{tag}": shape.color, f"k{tag}": shape.kind,
        f"a_s{tag}": _article(size_word), f"a_c{tag}": _article(shape.color),
    }


def scene_captions(scene: Scene, rng: random.Random, n: int = CAPTIONS_PER_IMAGE) -> list[str]:
    """``n`` differently worded captions, each true of ``scene``."""
    if len(scene.shapes) == 1:
        templates = SINGLE_TEMPLATES
        fill = lambda: {**_shape_words(scene.shapes[0], rng), "loc": scene.location}  # noqa: E731
    else:
        templates = PAIR_TEMPLATES
        rel = scene.relation
        fill = lambda: {  # noqa: E731
            **_shape_words(scene.shapes[0], rng, "A"), **_shape_words(scene.shapes[1], rng, "B"),
            "rel": rel, "inv": INVERSE[rel], "rel_long": LONG_RELATION[rel], "inv_long": LONG_RELATION[INVERSE[rel]],
        }
    chosen = rng.sample(templates, min(n, len(templates)))
    return [template.format(**fill()) for template in chosen]


def demo_words() -> list[str]:
    """Every word a demo caption can contain (sorted)."""
    words = {"a", "an"} | set(COLORS) | set(SHAPES)
    for synonyms in SIZE_WORDS.values():
        words |= set(synonyms)
    for phrase in list(LOCATIONS) + list(LONG_RELATION) + list(LONG_RELATION.values()):
        words |= set(phrase.split())
    for template in SINGLE_TEMPLATES + PAIR_TEMPLATES:
        words |= {w for w in template.split() if not w.startswith("{")}
    return sorted(words)


DEMO_WORDS = tuple(demo_words())


# --------------------------------------------------------------------------- samples and files
def _rng(seed: int, split: str, index: int) -> random.Random:
    return random.Random(f"vlt-demo:{seed}:{split}:{index}")  # str seeds are hashed with SHA-512: stable everywhere


def demo_sample(
    split: str, index: int, *, image_size: int = 64, seed: int = 0, image_format: str = "png"
) -> DemoSample:
    """The ``index``-th sample of ``split`` (a pure function of its arguments)."""
    rng = _rng(seed, split, index)
    scene = make_scene(rng, image_size)
    captions = scene_captions(scene, rng)
    extension = "jpg" if image_format.lower() in ("jpg", "jpeg") else "png"
    return DemoSample(render_scene(scene, image_size), captions, scene, f"demo_{split}_{index:06d}.{extension}")


def encode_image(image: Image.Image, image_format: str = "png") -> bytes:
    buffer = io.BytesIO()
    if image_format.lower() in ("jpg", "jpeg"):
        image.save(buffer, format="JPEG", quality=95)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_demo_arrows(
    arrow_dir,
    num_train: int = 5000,
    num_val: int = 500,
    num_test: int = 500,
    image_size: int = 64,
    seed: int = 0,
    *,
    num_restval: int = 0,
    image_format: str = "png",
    rows_per_batch: int = 256,
    progress: bool = False,
) -> dict[str, int]:
    """Write ``coco_caption_karpathy_{train,restval,val,test}.arrow`` into ``arrow_dir``; return rows per file."""
    if image_size < 16:
        raise ValueError(f"image_size={image_size} is too small; use >= 16")
    if image_format.lower() not in ("png", "jpg", "jpeg"):
        raise ValueError(f"image_format={image_format!r}; use png or jpeg")
    counts = {"train": num_train, "restval": num_restval, "val": num_val, "test": num_test}
    written = {}
    for split in SPLITS:
        name = f"{PREFIX}_{split}.arrow"
        indices = range(counts[split])
        if progress:
            from tqdm import tqdm

            indices = tqdm(indices, desc=f"demo {split}", unit="img")
        path = Path(arrow_dir) / name
        with AtomicArrowWriter(path, CAPTION_SCHEMA, rows_per_batch) as writer:
            for index in indices:
                sample = demo_sample(split, index, image_size=image_size, seed=seed, image_format=image_format)
                writer.write_row(
                    {
                        "image": encode_image(sample.image, image_format),
                        "caption": sample.captions,
                        "image_id": sample.image_id,
                        "split": split,
                    }
                )
        os.chmod(path, _file_mode())  # the writer's temp file is 0600; follow the umask like any new file
        written[name] = counts[split]
    return written


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
