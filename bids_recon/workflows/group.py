"""Group level: summarise participant outputs. Reads only OUTPUT_DIR, never BIDS_DIR."""

from __future__ import annotations

import json
import logging

from bids_recon.config import Config
from bids_recon.errors import MissingInputError
from bids_recon.io.atomic import atomic_write
from bids_recon.log import add_log_file, remove_log_file
from bids_recon.reports.group import write_group_report

LOGGER = logging.getLogger(__name__)


def run_group_level(config: Config) -> None:
    """Write the group report from the participant outputs in ``config.output_dir``.

    Raises
    ------
    MissingInputError
        OUTPUT_DIR is not a bids_recon output dataset or holds no participant outputs.

    """
    output_dir = config.output_dir
    description = output_dir / "dataset_description.json"
    try:
        generated_by = json.loads(description.read_text(encoding="utf-8"))["GeneratedBy"][0]
        ok = generated_by.get("Name") == "bids_recon"
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise MissingInputError(
            f"{output_dir} is not a bids_recon output dataset ({description} missing or not "
            f"written by bids_recon): run the participant level first."
        )
    labels = sorted(
        {
            p.name.removeprefix("sub-").removesuffix(".html")
            for p in output_dir.glob("sub-*")
            if p.is_dir() or p.suffix == ".html"
        }
    )
    if not labels:
        raise MissingInputError(f"No participant outputs (sub-*) in {output_dir}.")
    log_file = add_log_file(config.logs_dir / f"bids_recon-{config.run_uuid}.log")
    try:
        atomic_write(config.logs_dir / f"config-{config.run_uuid}.toml", config.to_toml())
        path = write_group_report(output_dir, labels)
        LOGGER.info("Group report for %d participant(s): %s", len(labels), path)
    finally:
        remove_log_file(log_file)
