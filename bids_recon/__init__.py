"""bids_recon: a BIDS App for deep image reconstruction from fMRI.

Reconstructs the images a participant saw or imagined from their BOLD activity, following
Shen, Horikawa, Majima & Kamitani (2019), PLoS Comput Biol 15(1): e1006633.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bids_recon")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = ["__version__"]
