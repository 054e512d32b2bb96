"""Allow ``python -m bids_recon``."""

from bids_recon.cli import main

raise SystemExit(main())
