"""Where pretrained weights are found when no option names them.

Nothing is downloaded. A weights file not given on the command line is looked for, by its
published name, in these folders (first match wins):

1. ``$BIDS_RECON_WEIGHTS_DIR`` (the container image sets it to ``/opt/weights``, where
   ``scripts/build-image.sh --weights FILE`` bakes files in);
2. torch's hub cache, ``$TORCH_HOME/hub/checkpoints`` (``TORCH_HOME`` defaults to
   ``$XDG_CACHE_HOME/torch``, else ``~/.cache/torch``), where torchvision keeps what it
   downloaded elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

WEIGHTS_DIR_ENV = "BIDS_RECON_WEIGHTS_DIR"

# The published file names (weights/README.md lists them for the container image), flat or in
# the folders of the lab's archives; the first found of a list is used.
VGG19_CACHE_NAME = "vgg19-dcbb9e9d.pth"  # torchvision's, as torch.hub caches it
LAB_VGG19_NAMES = ("VGG_ILSVRC_19_layers.pt", "VGG_ILSVRC_19_layers.pth")  # the lab's conversion
VGG19_SEARCH = (  # the lab's file (the paper's network) before torchvision's
    *LAB_VGG19_NAMES,
    *(f"VGG_ILSVRC_19_layers/{name}" for name in LAB_VGG19_NAMES),
    VGG19_CACHE_NAME,
)
GENERATOR_FOLDER = "bvlc_reference_caffenet_generator_ILSVRC2012_Training"
GENERATOR_SEARCH = ("generator_relu7.pt", f"{GENERATOR_FOLDER}/generator_relu7.pt")
ACT_RANGE_SEARCH = ("act_range/3x/fc7.txt", f"{GENERATOR_FOLDER}/act_range/3x/relu7.txt")


def weights_dirs() -> list[Path]:
    """The folders searched for weights files, in order (see the module docstring)."""
    dirs = []
    if chosen := os.environ.get(WEIGHTS_DIR_ENV):
        dirs.append(Path(chosen))
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    dirs.append(Path(os.environ.get("TORCH_HOME", cache / "torch")) / "hub" / "checkpoints")
    return dirs


def find_weights(names: Sequence[str]) -> Path | None:
    """The first of ``names`` (paths relative to a folder) that is a file in :func:`weights_dirs`.

    Folders are searched in order, and within a folder the names in order, so a preferred name
    listed first wins only within the same folder.
    """
    for folder in weights_dirs():
        for name in names:
            if (folder / name).is_file():
                return folder / name
    return None


def searched(names: Sequence[str]) -> str:
    """Where :func:`find_weights` looked, for error messages."""
    return f"{' or '.join(names)} in {', '.join(str(d) for d in weights_dirs())}"
