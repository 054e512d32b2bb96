"""Decoders from voxels to DNN units: dual-form ridge (default) and per-unit voxel selection."""

from bids_recon.decoding.ridge import RidgeDecoder
from bids_recon.decoding.selection import VoxelSelectionDecoder

__all__ = ["RidgeDecoder", "VoxelSelectionDecoder"]
