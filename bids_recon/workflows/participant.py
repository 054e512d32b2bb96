"""Participant level: check inputs, then run the stages for each participant."""

from __future__ import annotations

import dataclasses
import logging
import time

from bids_recon.config import Config
from bids_recon.errors import BidsReconError
from bids_recon.io.atomic import atomic_write
from bids_recon.io.derivatives import init_output_dataset
from bids_recon.io.layout import select_participants
from bids_recon.log import add_log_file, remove_log_file
from bids_recon.reports.participant import write_participant_report
from bids_recon.runtime import configure_runtime, resolve_device
from bids_recon.specs import DatasetSpec, resolve_spec

LOGGER = logging.getLogger(__name__)

# Stages whose code exists. The others are reported as not implemented, never faked.
IMPLEMENTED_STAGES: frozenset[str] = frozenset({"report"})
NOT_IMPLEMENTED = "not implemented yet"


class ParticipantsFailedError(BidsReconError):
    """One or more participants failed while others may have completed."""

    exit_code = 1


def run_participant_level(config: Config) -> None:
    """Run the participant level for every selected participant.

    Everything that can be checked without doing work is checked first (dataset spec, labels,
    device), so a bad invocation writes nothing. Then OUTPUT_DIR becomes a derivative dataset,
    the resolved config is saved under ``logs/``, and each participant is processed; with
    ``--stop-on-first-crash`` the first failure ends the run, otherwise the others continue and
    the run fails at the end.

    Raises
    ------
    BidsReconError
        A failed check (its own exit code), or :class:`ParticipantsFailedError`.

    """
    spec = resolve_spec(config.dataset_spec, config.bids_dir)
    labels = select_participants(config.bids_dir, config.participant_label)
    device = resolve_device(config.device)
    config = dataclasses.replace(config, dataset_spec=spec.source)

    init_output_dataset(config.output_dir, config.bids_dir)
    log_file = add_log_file(config.logs_dir / f"bids_recon-{config.run_uuid}.log")
    try:
        atomic_write(config.logs_dir / f"config-{config.run_uuid}.toml", config.to_toml())
        configure_runtime(config.omp_nthreads, config.random_seed)
        LOGGER.info("Participants to process: %s", ", ".join(f"sub-{x}" for x in labels))
        failed: list[str] = []
        for label in labels:
            start = time.monotonic()
            try:
                run_participant(config, spec, label, str(device))
            except Exception:
                if config.stop_on_first_crash:
                    raise
                LOGGER.exception("sub-%s failed; continuing with the others", label)
                failed.append(label)
                continue
            LOGGER.info("sub-%s finished in %.1f s", label, time.monotonic() - start)
        if failed:
            raise ParticipantsFailedError(
                f"{len(failed)} of {len(labels)} participant(s) failed: "
                f"{', '.join(f'sub-{x}' for x in failed)}; see {log_file.baseFilename}"
            )
    finally:
        remove_log_file(log_file)


def run_participant(config: Config, spec: DatasetSpec, label: str, device: str) -> None:
    """Run the requested stages for ``sub-<label>`` and write its report."""
    status = {
        stage: ("done" if stage in IMPLEMENTED_STAGES else NOT_IMPLEMENTED)
        for stage in config.stages
    }
    for stage, state in status.items():
        if state == NOT_IMPLEMENTED:
            LOGGER.warning("sub-%s: stage '%s' is %s; skipped", label, stage, NOT_IMPLEMENTED)
    if "report" in config.stages:
        path = write_participant_report(config, spec, label, device, status)
        LOGGER.info("sub-%s: report written to %s", label, path)
