"""Participant level: check inputs, then run the stages for each participant."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Iterable

import torch

from bids_recon.config import Config
from bids_recon.errors import BidsReconError, TemporaryFailureError, Terminated, stopped_by
from bids_recon.features.networks import resolve_weights
from bids_recon.io.atomic import atomic_write, remove_orphans
from bids_recon.io.derivatives import init_output_dataset
from bids_recon.io.layout import build_layout, read_filter_file, select_participants, select_runs
from bids_recon.io.outputs import stimulus_labels, update_stimuli_table
from bids_recon.io.validation import validate_bids
from bids_recon.log import (
    add_log_file,
    collect_warnings,
    participant_context,
    remove_log_file,
    timed,
)
from bids_recon.reports.participant import write_participant_report
from bids_recon.runtime import configure_runtime, resolve_device
from bids_recon.specs import DatasetSpec, resolve_spec
from bids_recon.workflows.bdata import collect_bdata_inputs
from bids_recon.workflows.context import RunContext, RunNetworks
from bids_recon.workflows.decode import run_decode_stage
from bids_recon.workflows.evaluate import evaluate_reconstructions
from bids_recon.workflows.recon import run_recon_stage
from bids_recon.workflows.resources import fit_to_memory
from bids_recon.workflows.samples import SampleInputs, collect_inputs, run_samples_stage

LOGGER = logging.getLogger(__name__)


class ParticipantsFailedError(BidsReconError):
    """One or more participants failed while others may have completed.

    The exit code is that of the first failure when it was a :class:`BidsReconError` (bad input
    stays 65, missing input 66, ...), else 1.
    """

    def __init__(self, message: str, first: BaseException):
        super().__init__(message)
        self.exit_code = first.exit_code if isinstance(first, BidsReconError) else 1


def run_participant_level(config: Config) -> None:
    """Run the participant level for every selected participant.

    Everything that can be checked without heavy work is checked first (dataset spec, labels,
    BIDS validation, device, and each participant's runs, events, masks and stimuli), so a bad
    invocation or bad input writes nothing. Then OUTPUT_DIR becomes a derivative dataset, the
    resolved config is saved under ``logs/``, and each participant is processed; with
    ``--stop-on-first-crash`` the first failure ends the run, otherwise the others continue and
    the run fails at the end.

    Raises
    ------
    BidsReconError
        A failed check (its own exit code), or :class:`ParticipantsFailedError`.
    """
    spec = resolve_spec(config.dataset_spec, config.bids_dir).choose_test_sets(config.sets)
    labels = select_participants(config.bids_dir, config.participant_label)
    device = resolve_device(config.device)
    if not config.skip_bids_validation:
        validate_bids(config.bids_dir)
    config = dataclasses.replace(config, dataset_spec=spec.source)
    needs_samples = {"samples", "decode", "recon"} & set(config.stages)
    inputs = collect_all_inputs(config, spec, labels) if needs_samples else {}
    check_stimulus_labels(inputs.values())
    if "decode" in config.stages:
        resolve_weights(config.network, config.weights)
    context = RunContext(spec, device, RunNetworks(config))
    if inputs:
        config = fit_to_memory(
            config, spec, list(inputs.values()), context.networks, context.device
        )

    init_output_dataset(config.output_dir, config.bids_dir)
    log_file = add_log_file(config.logs_dir / f"bids_recon-{config.run_uuid}.log")
    try:
        atomic_write(config.logs_dir / f"config-{config.run_uuid}.toml", config.to_toml())
        configure_runtime(config.omp_nthreads, config.random_seed)
        for folder in (config.output_dir, config.work_dir):
            if removed := remove_orphans(folder):
                LOGGER.info("Removed %d temporary file(s) of killed runs from %s", removed, folder)
        LOGGER.info("Participants to process: %s", ", ".join(f"sub-{x}" for x in labels))
        failed: dict[str, Exception] = {}
        for label in labels:
            start = time.monotonic()
            try:
                try:
                    with participant_context(label):
                        run_participant(config, context, label, inputs.get(label))
                except (torch.cuda.OutOfMemoryError, MemoryError) as err:
                    raise TemporaryFailureError(
                        f"sub-{label}: out of memory on {device} ({err}). Lower --batch-size "
                        "or --recon-batch-size, or give the job more memory; the rerun resumes."
                    ) from err
            except Exception as err:
                if config.stop_on_first_crash:
                    raise
                LOGGER.error(
                    "sub-%s failed: %s", label, err, exc_info=not isinstance(err, BidsReconError)
                )
                failed[label] = err
                continue
            LOGGER.info("sub-%s finished in %.1f s", label, time.monotonic() - start)
        if failed:
            raise ParticipantsFailedError(
                f"{len(failed)} of {len(labels)} participant(s) failed: "
                f"{', '.join(f'sub-{x}' for x in failed)}; see {log_file.baseFilename}",
                next(iter(failed.values())),
            )
    except BaseException as err:
        removed = sum(remove_orphans(f, mine=True) for f in (config.output_dir, config.work_dir))
        if isinstance(err, (KeyboardInterrupt, Terminated)):
            LOGGER.error(
                "%s; removed %d temporary file(s); a rerun resumes.", stopped_by(err), removed
            )
            err.logged = True
        elif removed:
            LOGGER.info("Removed %d temporary file(s) of this run", removed)
        raise
    finally:
        remove_log_file(log_file)


def check_stimulus_labels(inputs: Iterable[SampleInputs]) -> None:
    """Refuse, before any output, stimulus names of one set that would share a file label."""
    for item in inputs:
        by_set: dict[str, list[str]] = {}
        for set_name, name in item.sample_stimuli():
            by_set.setdefault(set_name, []).append(name)
        for names in by_set.values():
            stimulus_labels(names)


def collect_all_inputs(
    config: Config, spec: DatasetSpec, labels: list[str]
) -> dict[str, SampleInputs]:
    """Select and check the inputs of every participant before any work starts.

    The inputs are the BOLD runs of the dataset (raw, or fMRIPrep's with
    ``--derivatives fmriprep=PATH``), or the lab's preprocessed files with
    ``--derivatives bdata=DIR``.
    """
    if "bdata" in config.derivatives:
        folder = config.derivatives["bdata"]
        return {label: collect_bdata_inputs(config, spec, label, folder) for label in labels}
    layout = build_layout(config.bids_dir, config.bids_database_dir, labels)
    query = read_filter_file(config.bids_filter_file) if config.bids_filter_file else None
    inputs = {}
    for label in labels:
        runs = select_runs(
            layout,
            spec,
            label,
            sessions=config.session_label,
            tasks=config.task_id,
            bold_query=query,
            fmriprep_dir=config.derivatives.get("fmriprep"),
            space=config.space,
            required={spec.training_set.name, *config.sets},
        )
        inputs[label] = collect_inputs(config, spec, label, runs)
        counts = Counter(run.set_name for run in runs)
        LOGGER.info(
            "sub-%s: runs per set: %s", label, ", ".join(f"{k} {v}" for k, v in counts.items())
        )
    return inputs


def run_participant(
    config: Config,
    context: RunContext,
    label: str,
    inputs: SampleInputs | None,
) -> None:
    """Run the requested stages for ``sub-<label>`` and write its report.

    With ``--shard K/N`` only this job's part of the reconstructions is made; the job that
    finds every part complete evaluates them and writes the report.
    """
    spec, device = context.spec, context.device
    started = time.monotonic()
    with collect_warnings() as messages:
        status: dict[str, str] = {}
        if inputs is not None:
            for warning in inputs.warnings:
                LOGGER.warning("%s", warning)
            present = {set_name for set_name, _ in inputs.sample_stimuli()}
            for absent in [s.name for s in spec.test_sets if s.name not in present]:
                LOGGER.warning("sub-%s: test set '%s' skipped: it has no data", label, absent)
            spec = spec.with_sets(present)
            with timed(LOGGER, f"sub-{label}: samples stage"):
                sample_set = run_samples_stage(config, spec, inputs)
            update_stimuli_table(
                config.output_dir,
                config.resolved_stimuli_dir,
                sample_set.stimuli,
                inputs.stimulus_files,
            )
            status["samples"] = "done"
            if "decode" in config.stages:
                network = context.networks.decode()
                files = inputs.stimulus_files
                with timed(LOGGER, f"sub-{label}: decode stage"):
                    run_decode_stage(config, spec, label, sample_set, files, network, device)
                status["decode"] = "done"
            if "recon" in config.stages:
                network, files = context.networks.recon(), inputs.stimulus_files
                with timed(LOGGER, f"sub-{label}: recon stage"):
                    remaining = run_recon_stage(
                        config, spec, label, sample_set, files, network, device
                    )
                if remaining:
                    LOGGER.info(
                        "sub-%s: shard %d/%d done; %d batch(es) of other shards remain, so "
                        "evaluation and the report wait for the job that completes them",
                        label,
                        *config.shard,
                        remaining,
                    )
                    return
                with timed(LOGGER, f"sub-{label}: evaluation"):
                    evaluate_reconstructions(config, label, files, network, device)
                status["recon"] = "done"
        if "report" in config.stages:
            status["report"] = "done"
            try:
                path = write_participant_report(
                    config, spec, label, str(device), status, messages, time.monotonic() - started
                )
            except Exception:  # a report must never fail the run
                LOGGER.exception("sub-%s: the report could not be written", label)
            else:
                LOGGER.info("sub-%s: report written to %s", label, path)
