"""``bids_recon-features``: DNN features of a list or folder of images, as the app computes them.

Users of the lab's ecosystem (bdpy, brain-decoding-cookbook) extract image features on their own;
this command gives them the app's features: the same networks, weights, preprocessing (and its
pairing check) and extraction code (:func:`bids_recon.features.extract.extract_features`).
The output is one NumPy ``.npz`` file: one array per layer (images × units, pre-ReLU, float32)
and ``names``, the image names (file names without extension) in row order.
"""

from __future__ import annotations

import argparse
import io
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bids_recon import __version__
from bids_recon.cli import run_guarded
from bids_recon.config import Config
from bids_recon.errors import MissingInputError, OutputNotWritableError, UsageError
from bids_recon.features.extract import extract_features
from bids_recon.features.networks import build_network
from bids_recon.io.atomic import atomic_write
from bids_recon.log import setup_logging
from bids_recon.options import OPTIONS
from bids_recon.runtime import resolve_device

LOGGER = logging.getLogger("bids_recon")
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".tif", ".tiff", ".bmp")
NAMES_KEY = "names"
SHARED_OPTIONS = (
    "network",
    "weights",
    "layers",
    "preprocessing",
    "device",
    "batch_size",
    "verbose",
)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``bids_recon-features``."""
    defaults = Config(Path("."), Path("."), "participant")
    parser = argparse.ArgumentParser(
        prog="bids_recon-features",
        description="Extract DNN features (pre-ReLU) of images with bids_recon's networks, "
        "weights and preprocessing; writes one array per layer (images x units, float32) and "
        "the image names to an .npz file.",
    )
    parser.add_argument(
        "images", nargs="+", type=Path, metavar="IMAGE", help="image files or folders of images"
    )
    parser.add_argument("--out", type=Path, required=True, metavar="FILE.npz", help="output file")
    network = parser.add_argument_group("Network (the options of bids_recon)")
    for option in OPTIONS:
        if option.dest in SHARED_OPTIONS:
            option.add_to(network)
    parser.set_defaults(**{dest: getattr(defaults, dest) for dest in SHARED_OPTIONS})
    parser.add_argument("--version", action="version", version=f"bids_recon {__version__}")
    return parser


def image_files(items: Sequence[Path]) -> list[Path]:
    """Image files named on the command line, folders expanded (sorted by name).

    Raises
    ------
    MissingInputError
        A path does not exist, or a folder holds no image.
    UsageError
        Two images share a name (the output could not tell them apart).
    """
    files: list[Path] = []
    for item in items:
        if item.is_dir():
            found = sorted(
                p for p in item.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            )
            if not found:
                raise MissingInputError(f"No image ({', '.join(IMAGE_EXTENSIONS)}) in {item}")
            files.extend(found)
        elif item.is_file():
            files.append(item)
        else:
            raise MissingInputError(f"Image not found: {item}")
    seen: dict[str, Path] = {}
    for path in files:
        if path.stem in seen:
            raise UsageError(f"Images {seen[path.stem]} and {path} have the same name {path.stem}")
        seen[path.stem] = path
    return files


def write_features(path: Path, features: dict[str, np.ndarray], names: Sequence[str]) -> None:
    """Write the layers and the image names to ``path`` (.npz), atomically.

    Raises
    ------
    OutputNotWritableError
        The output folder cannot be created or written.
    """
    buffer = io.BytesIO()
    np.savez(buffer, **features, **{NAMES_KEY: np.asarray(names, dtype=str)})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, buffer.getvalue())
    except OSError as err:
        raise OutputNotWritableError(f"Cannot write {path}: {err}") from err


def run(args: argparse.Namespace) -> None:
    """Extract and write the features the arguments ask for."""
    if NAMES_KEY in args.layers:
        raise UsageError(f"--layers: {NAMES_KEY!r} is the key of the image names")
    if args.out.suffix != ".npz":
        raise UsageError(f"--out {args.out}: the output is an .npz file")
    paths = image_files(args.images)
    network = build_network(args.network, args.weights, args.layers, args.preprocessing)
    device = resolve_device(args.device)
    LOGGER.info(
        "%d image(s) through %s (%s preprocessing), layers %s",
        len(paths),
        network.name,
        network.preprocessing.kind,
        ", ".join(network.layers),
    )
    features = extract_features(network, paths, args.batch_size, device)
    write_features(args.out, features, [p.stem for p in paths])
    LOGGER.info("Wrote %s", args.out)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bids_recon-features`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    return run_guarded(lambda: run(args))
