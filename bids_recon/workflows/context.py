"""What a participant-level run builds once and hands to every stage and participant.

The dataset spec, the compute device and the feature networks. Building VGG19 reads and hashes
its 548 MB weights file and runs the pairing check, so the run keeps the networks it built,
keyed by what makes them differ (the tapped layers; network name, weights and preprocessing are
the run's), and the memory estimates, the decode stage, the reconstruction stage and the
evaluation all use the same one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from bids_recon.config import Config
from bids_recon.features.networks import TappedNetwork, build_network
from bids_recon.specs import DatasetSpec


class RunNetworks:
    """The networks of one run (``--network``, ``--weights``, ``--preprocessing``).

    Parameters
    ----------
    config : Config
    """

    def __init__(self, config: Config):
        self.config = config
        self._built: dict[tuple[str, ...], TappedNetwork] = {}

    def tapped(self, layers: tuple[str, ...]) -> TappedNetwork:
        """The network with taps on ``layers`` (all of its standard layers when empty)."""
        if layers not in self._built:
            config = self.config
            self._built[layers] = build_network(
                config.network, config.weights, layers, config.preprocessing
            )
        return self._built[layers]

    def decode(self) -> TappedNetwork:
        """The network whose layers are decoded (``--layers``)."""
        return self.tapped(tuple(self.config.layers))

    def recon(self) -> TappedNetwork:
        """The network reconstructions match (``--recon-layers``, else the decoded layers)."""
        return self.tapped(tuple(self.config.recon_layers or self.config.layers))


@dataclass
class RunContext:
    """The spec, device and networks of one participant-level run.

    Attributes
    ----------
    spec : DatasetSpec
        The dataset spec (with the ``--sets`` chosen); a participant's stages get it narrowed
        to the sets it has.
    device : torch.device
    networks : RunNetworks
    """

    spec: DatasetSpec
    device: torch.device
    networks: RunNetworks = field(repr=False)
