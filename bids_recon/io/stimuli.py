"""Stimulus names → image files under the stimuli folder.

A name is either a path relative to the stimuli folder (BIDS ``stim_file``) or a bare name such
as ds001506's ``n03954393_10038`` that matches ``<name><ext>`` anywhere below the folder, the
extension matched case-insensitively from the spec's list. Names may not leave the folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from bids_recon.errors import InputDataError, MissingInputError

# Stimulus names that are category labels rather than images: ImageNet synsets or their numbers.
CATEGORY_LIKE = re.compile(r"[nN]?\d{5,}(\.0+)?")


class StimulusIndex:
    """An index of the image files below ``root``, built once.

    Parameters
    ----------
    root : Path
        The stimuli folder.
    extensions : iterable of str
        Image extensions to consider (``.JPEG``, ``.png``, ...), matched case-insensitively.
    """

    def __init__(self, root: Path, extensions: Iterable[str]):
        self.root = root.resolve()
        wanted = {e.lower() for e in extensions}
        self._by_stem: dict[str, list[Path]] = {}
        if self.root.is_dir():
            for path in sorted(self.root.rglob("*")):
                if path.is_file() and path.suffix.lower() in wanted:
                    self._by_stem.setdefault(path.stem, []).append(path)

    def escapes(self, name: str) -> bool:
        """Whether ``name`` (``../x``, an absolute path, ...) points outside the folder.

        The check is on the name itself, not on symbolic links inside the folder, so datasets
        whose images are links into a DataLad annex still resolve.
        """
        return not Path(os.path.normpath(self.root / name)).is_relative_to(self.root)

    def resolve(self, name: str) -> Path | None:
        """The image file of ``name``, or None when there is none (or it would leave the folder)."""
        if self.escapes(name):
            return None
        candidate = Path(os.path.normpath(self.root / name))
        if candidate.is_file():
            return candidate
        matches = self._by_stem.get(Path(name).name)
        return matches[0] if matches and "/" not in name else None

    def resolve_all(self, names_by_set: Mapping[str, Iterable[str]]) -> dict[str, Path]:
        """Resolve every name at once; report all missing names together.

        Raises
        ------
        MissingInputError
            Listing how many names of which set have no image, and the first 20.
        """
        found: dict[str, Path] = {}
        missing: dict[str, list[str]] = {}
        for set_name, names in names_by_set.items():
            for name in sorted(set(names)):
                path = self.resolve(name)
                if path is None:
                    missing.setdefault(set_name, []).append(name)
                else:
                    found[name] = path
        if missing:
            total = sum(len(v) for v in missing.values())
            detail = "; ".join(
                f"{s}: {len(v)} ({', '.join(v[:20])}{', ...' if len(v) > 20 else ''})"
                for s, v in missing.items()
            )
            hints = [
                f" Set '{s}': names such as {v[0]!r} look like categories (synset ids), not "
                "images: its dataset spec may lack a mapping rule (stimulus_from = "
                '"category" with category_set, or a stimulus_map).'
                for s, v in missing.items()
                if all(CATEGORY_LIKE.fullmatch(name) for name in v)
            ]
            raise MissingInputError(
                f"{total} stimulus image(s) not found under {self.root}: {detail}. "
                f"Put the images there (or pass --stimuli-dir), named <stimulus name><extension>."
                + "".join(hints)
            )
        return found


MAX_PIXELS = 89_478_485  # Pillow's own limit (a 0.25 GB RGB image); larger is a decompression bomb


def check_image_headers(paths: Iterable[Path]) -> None:
    """Open every image's header (not its pixels): a known format, readable, not too large.

    Run before any output, so that a bad image stops the run with nothing written; decoding
    the pixels is left to the stages that need them.

    Raises
    ------
    InputDataError
        Naming the first bad file and what is wrong with it.
    """
    import warnings

    from PIL import Image

    for path in paths:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as image:
                    width, height = image.size
                    kind = image.format
        except Image.DecompressionBombError:
            raise InputDataError(
                f"Stimulus image {path} has more than {MAX_PIXELS:,} pixels (refused as a "
                "decompression bomb); stimuli are shown at a few hundred pixels."
            ) from None
        except (OSError, ValueError) as err:
            raise InputDataError(f"Stimulus image {path} cannot be read: {err}") from None
        if width * height > MAX_PIXELS:
            raise InputDataError(
                f"Stimulus image {path} is {width} x {height} pixels, more than {MAX_PIXELS:,} "
                "(refused as a decompression bomb); stimuli are shown at a few hundred pixels."
            )
        if kind is None:
            raise InputDataError(f"Stimulus image {path}: unknown image format")
        if _truncated(path, kind):
            raise InputDataError(
                f"Stimulus image {path} is truncated (its {kind} end marker is missing): an "
                "incomplete download or copy."
            )


END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND\xaeB`\x82"}


def _truncated(path: Path, kind: str) -> bool:
    """Whether a JPEG or PNG lacks its end marker (read from the file's last bytes only)."""
    marker = END_MARKERS.get(kind)
    if marker is None:
        return False
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(handle.tell() - 64, 0))
        tail = handle.read().rstrip(b"\x00\r\n ")
    return not tail.endswith(marker)
