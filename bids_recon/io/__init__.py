"""Everything that touches the filesystem layout: BIDS inputs and BIDS-Derivatives outputs."""
