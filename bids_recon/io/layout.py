"""Queries of the input BIDS dataset."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bids_recon.errors import (
    InputDataError,
    MissingInputError,
    NoMatchingFilesError,
    OutputNotWritableError,
    UsageError,
)
from bids_recon.specs import DatasetSpec, RoiSpec, SetSpec

LOGGER = logging.getLogger(__name__)


def list_participants(bids_dir: Path) -> list[str]:
    """Labels of the participants in ``bids_dir`` (its ``sub-<label>`` folders), sorted."""
    return sorted(p.name.removeprefix("sub-") for p in bids_dir.glob("sub-*") if p.is_dir())


def _container_hint() -> str:
    if os.environ.get("APPTAINER_CONTAINER") or os.environ.get("SINGULARITY_CONTAINER"):
        return " Inside Singularity/Apptainer, check that the dataset folder is bound with -B."
    if os.environ.get("BIDS_RECON_CONTAINER_TAG"):
        return " Inside Docker, check that the dataset folder is mounted with -v."
    return ""


def select_participants(bids_dir: Path, requested: Iterable[str]) -> list[str]:
    """Check requested participant labels against the dataset, before any work starts.

    Parameters
    ----------
    bids_dir : Path
        The input dataset.
    requested : iterable of str
        Labels without ``sub-``; empty means every participant.

    Returns
    -------
    list of str
        The labels to process, sorted.

    Raises
    ------
    NoMatchingFilesError
        A requested label does not exist (the message lists those that do), or the dataset has no
        participants at all.

    """
    available = list_participants(bids_dir)
    if not available:
        raise NoMatchingFilesError(
            f"No participants (sub-<label> folders) found in {bids_dir}.{_container_hint()}"
        )
    wanted = sorted(set(requested))
    if not wanted:
        return available
    missing = [label for label in wanted if label not in available]
    if missing:
        raise NoMatchingFilesError(
            f"Participant label(s) not found in {bids_dir}: {', '.join(missing)}. "
            f"Available: {', '.join(available)}.{_container_hint()}"
        )
    return wanted


# ----------------------------------------------------------------------------- run selection

# Folders and datatypes the pipeline never reads (as fMRIPrep does; sourcedata and stimuli are
# read by path, not through pybids).
_IGNORE = (
    "code",
    "stimuli",
    "sourcedata",
    "models",
    "derivatives",
    re.compile(r"/\."),
    re.compile(r"sub-[^/]+/(ses-[^/]+/)?(anat|dwi|fmap|perf|beh|eeg|ieeg|meg|pet)/"),
)


@dataclass(frozen=True)
class RunFiles:
    """The files of one BOLD run selected for a set.

    Attributes
    ----------
    set_name : str
        The dataset spec's set (``training``, ``natural``, ...).
    session, task, run : str
        Entity labels as written in the file name ("" when absent).
    bold : Path
        The BOLD series to sample: raw, or fMRIPrep's ``desc-preproc_bold`` with ``--derivatives``.
    events : Path
        The raw events file.
    tr : float
        Repetition time (s).
    start_time : float
        Time of a volume's reference point after its acquisition start (fMRIPrep's ``StartTime``
        after slice-timing correction; 0 for raw data).
    """

    set_name: str
    session: str
    task: str
    run: str
    bold: Path
    events: Path
    tr: float
    start_time: float = 0.0


def build_layout(bids_dir: Path, database_dir: Path | None, participants: Iterable[str]) -> Any:
    """Index ``bids_dir`` with pybids, narrowly, optionally reusing a database folder.

    Without ``database_dir`` only the given participants' functional files are indexed (in
    memory). With it, the whole dataset is indexed once into a private folder that is then
    renamed into place, so concurrent jobs never share a half-built SQLite file; later runs reuse
    it.
    """
    from bids import BIDSLayout, BIDSLayoutIndexer

    ignore = list(_IGNORE)
    labels = sorted(participants)
    if database_dir is None and labels:
        ignore.append(re.compile(rf"^/sub-(?!({'|'.join(map(re.escape, labels))})(/|$))"))

    def index(database_path: Path | None) -> Any:
        indexer = BIDSLayoutIndexer(validate=False, ignore=ignore, index_metadata=True)
        return BIDSLayout(bids_dir, validate=False, indexer=indexer, database_path=database_path)

    if database_dir is None:
        return index(None)
    if any(database_dir.glob("*.sqlite")):
        LOGGER.info("Reusing the pybids database in %s", database_dir)
        return index(database_dir)
    private = database_dir.parent / f".{database_dir.name}.{uuid.uuid4().hex[:8]}"
    try:
        database_dir.parent.mkdir(parents=True, exist_ok=True)
        index(private)
        try:
            os.replace(private, database_dir)
        except OSError:  # another job moved its database into place first
            shutil.rmtree(private, ignore_errors=True)
    except OSError as err:
        shutil.rmtree(private, ignore_errors=True)
        raise OutputNotWritableError(
            f"Cannot write the pybids database {database_dir}: {err}"
        ) from err
    return index(database_dir)


def read_filter_file(path: Path) -> dict[str, Any]:
    """The ``bold`` query of a ``--bids-filter-file`` (fMRIPrep format).

    Values are labels (strings or numbers), lists of labels, ``null`` (entity must be absent)
    or ``"*"`` (entity must be present).

    Raises
    ------
    UsageError
        Invalid JSON or structure; the message names the file.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UsageError(f"--bids-filter-file {path}: cannot be read as JSON ({err})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise UsageError(
            f"--bids-filter-file {path}: expected "
            f'{{"bold": {{"entity": value, ...}}}}, got {data!r}'
        )
    unused = sorted(set(data) - {"bold"})
    if unused:
        LOGGER.warning(
            "--bids-filter-file %s: queries %s do not apply here; only 'bold' does", path, unused
        )
    query = data.get("bold", {})
    for entity, value in query.items():
        values = value if isinstance(value, list) else [value]
        if not all(v is None or isinstance(v, (str, int)) for v in values):
            raise UsageError(f"--bids-filter-file {path}: bad value for {entity!r}: {value!r}")
    return query


def _label_matches(value: str, pattern: str) -> bool:
    """Whole-label regex match; numeric labels also match without zero padding (run 01 ~ 1)."""
    candidates = {value}
    if value.isdigit():
        candidates.add(str(int(value)))
    return any(re.fullmatch(pattern, c) for c in candidates)


def _query_matches(entities: Mapping[str, str], query: Mapping[str, Any]) -> bool:
    for entity, wanted in query.items():
        value = entities.get(entity)
        options = wanted if isinstance(wanted, list) else [wanted]
        if options == [None]:
            if value is not None:
                return False
        elif options == ["*"]:
            if value is None:
                return False
        elif value is None or not any(_label_matches(value, re.escape(str(o))) for o in options):
            return False
    return True


def _file_entities(path: Path) -> dict[str, str]:
    """Entity labels exactly as written in a BIDS file name."""
    return dict(re.findall(r"([a-zA-Z]+)-([a-zA-Z0-9+]+)", path.name.split(".")[0]))


_ENTITY_KEYS = {
    "sub": "subject",
    "ses": "session",
    "task": "task",
    "run": "run",
    "acq": "acquisition",
    "ce": "ceagent",
    "rec": "reconstruction",
    "dir": "direction",
    "echo": "echo",
}


def select_runs(
    layout: Any,
    spec: DatasetSpec,
    subject: str,
    sessions: Iterable[str] = (),
    tasks: Iterable[str] = (),
    bold_query: Mapping[str, Any] | None = None,
    fmriprep_dir: Path | None = None,
    space: str = "T1w",
    required: Iterable[str] | None = None,
) -> list[RunFiles]:
    """The BOLD runs of every set of the spec for one participant.

    A set in ``required`` (default: every set) that selects no run is an error; the others
    are left out (a partial dataset: the caller says which are absent).

    Parameters
    ----------
    layout : bids.BIDSLayout
        From :func:`build_layout`.
    spec : DatasetSpec
        Its sets' ``filters`` (regexes on whole labels) decide which runs belong to which set.
    subject : str
        Participant label.
    sessions, tasks : iterable of str
        ``--session-label`` / ``--task-id``: when given, only these.
    bold_query : mapping, optional
        The ``bold`` query of ``--bids-filter-file``.
    fmriprep_dir : Path, optional
        ``--derivatives fmriprep=PATH``: sample fMRIPrep's ``desc-preproc_bold`` in ``space``.
    required : iterable of str, optional
        Sets that must have runs (default: all).

    Raises
    ------
    NoMatchingFilesError
        A set selects no run; the message shows the filters and the sessions and tasks that
        exist for the participant.
    MissingInputError
        A run lacks its events file or its fMRIPrep counterpart.
    """
    sessions, tasks = set(sessions), set(tasks)
    query = dict(bold_query or {})
    required = set(spec.sets if required is None else required)

    def wanted(path: Path, set_spec: SetSpec) -> bool:
        entities = {_ENTITY_KEYS.get(k, k): v for k, v in _file_entities(path).items()}
        return (
            all(_label_matches(entities.get(k, ""), p) for k, p in set_spec.filters.items())
            and (not sessions or entities.get("session") in sessions)
            and (not tasks or entities.get("task") in tasks)
            and (not query or _query_matches(entities, query))
        )

    bolds = functional_files(layout, subject, "bold", [".nii.gz", ".nii"])
    events = functional_files(layout, subject, "events", ".tsv")
    runs: list[RunFiles] = []
    for set_spec in spec.sets.values():
        orphans = [e for e in events if wanted(e, set_spec) and not _bold_of(e)]
        if orphans:
            raise MissingInputError(
                f"{len(orphans)} events file(s) of set '{set_spec.name}' have no BOLD image, "
                f"e.g. {orphans[0]} (expected a _bold.nii.gz of the same name beside it)."
            )
        selected = [b for b in bolds if wanted(b, set_spec)]
        if not selected and set_spec.name in required:
            raise NoMatchingFilesError(
                _nothing_selected(layout, subject, set_spec, sessions, tasks, query)
            )
        runs.extend(_run_files(layout, set_spec.name, b, fmriprep_dir, space) for b in selected)
    return runs


def functional_files(
    layout: Any, subject: str, suffix: str, extension: str | list[str] | None = None
) -> list[Path]:
    """The files of ``sub-<subject>`` in a ``func`` folder with ``suffix``, sorted.

    The folder is checked on the path below the dataset root: pybids' ``datatype`` entity is
    read from the whole path, so a dataset stored under a folder named like a datatype
    (``/scratch/perf/ds``) would otherwise select nothing.
    """
    query = {"subject": subject, "suffix": suffix}
    if extension is not None:
        query["extension"] = extension
    root = Path(layout.root)
    return sorted(
        path
        for path in (Path(f.path) for f in layout.get(**query))
        if path.relative_to(root).parent.name == "func"
    )


def _bold_of(events: Path) -> Path | None:
    """The BOLD image beside an events file (a dangling annex link counts as present)."""
    stem = events.name.removesuffix("_events.tsv")
    for extension in (".nii.gz", ".nii"):
        path = events.with_name(f"{stem}_bold{extension}")
        if path.exists() or path.is_symlink():
            return path
    return None


def _nothing_selected(
    layout: Any,
    subject: str,
    set_spec: SetSpec,
    sessions: set[str],
    tasks: set[str],
    query: Mapping[str, Any],
) -> str:
    filters = ", ".join(f"{k}=~{v}" for k, v in set_spec.filters.items()) or "none"
    extra = []
    if sessions:
        extra.append(f"--session-label {' '.join(sorted(sessions))}")
    if tasks:
        extra.append(f"--task-id {' '.join(sorted(tasks))}")
    if query:
        extra.append(f"filter file {dict(query)}")
    have_sessions = {
        _file_entities(path).get("ses", "") for path in functional_files(layout, subject, "bold")
    } - {""} or ["(none)"]
    have_tasks = layout.get_tasks(subject=subject) or ["(none)"]
    return (
        f"No BOLD runs of sub-{subject} match set '{set_spec.name}' (spec filters: {filters}"
        f"{'; ' + '; '.join(extra) if extra else ''}). sub-{subject} has sessions "
        f"{', '.join(sorted(have_sessions))} and tasks {', '.join(sorted(have_tasks))}."
    )


def _run_files(
    layout: Any,
    set_name: str,
    raw_bold: Path,
    fmriprep_dir: Path | None,
    space: str,
) -> RunFiles:
    entities = {_ENTITY_KEYS.get(k, k): v for k, v in _file_entities(raw_bold).items()}
    stem = raw_bold.name.split(".")[0].removesuffix("_bold")
    events = raw_bold.with_name(f"{stem}_events.tsv")
    if not events.is_file():
        raise MissingInputError(f"No events file for {raw_bold}: expected {events}")
    metadata = layout.get_metadata(str(raw_bold))
    source, start_time = raw_bold, 0.0
    if fmriprep_dir is not None:
        folder = fmriprep_dir / raw_bold.parent.relative_to(layout.root)
        matches = sorted(folder.glob(f"{stem}_space-{space}*_desc-preproc_bold.nii*"))
        if not matches:
            raise MissingInputError(
                f"No fMRIPrep output for {raw_bold.name} in {folder}: expected "
                f"{stem}_space-{space}_desc-preproc_bold.nii.gz (check --space and that fMRIPrep "
                f"was run with --output-spaces {space})."
            )
        source = matches[0]
        sidecar = source.with_name(source.name.split(".")[0] + ".json")
        if sidecar.is_file():
            derived = json.loads(sidecar.read_text(encoding="utf-8"))
            metadata = {**metadata, **derived}
            start_time = float(derived.get("StartTime", 0.0))
    tr = metadata.get("RepetitionTime")
    if not isinstance(tr, (int, float)) or tr <= 0:
        raise InputDataError(f"No valid RepetitionTime in the sidecar(s) of {source}: {tr!r}")
    return RunFiles(
        set_name=set_name,
        session=entities.get("session", ""),
        task=entities.get("task", ""),
        run=entities.get("run", ""),
        bold=source,
        events=events,
        tr=float(tr),
        start_time=start_time,
    )


def find_mask_files(
    base_dir: Path, rois: RoiSpec, subject: str, names: Iterable[str]
) -> dict[str, list[Path]]:
    """The mask files of each analysed ROI, from the spec's directory and pattern.

    Raises
    ------
    UsageError
        An ROI is neither in the spec's ``combine`` table nor a mask name.
    MissingInputError
        A mask file is missing (all missing files are listed).
    """
    folder = base_dir / rois.directory.format(subject=subject)
    hemispheres = rois.hemispheres or ("",)
    found: dict[str, list[Path]] = {}
    missing: list[str] = []
    for name in names:
        parts = rois.combine.get(name, (name,))
        paths = []
        for part in parts:
            for hemi in hemispheres:
                path = folder / rois.pattern.format(subject=subject, hemi=hemi, roi=part)
                if path.exists():
                    paths.append(path)
                else:
                    missing.append(str(path))
        found[name] = paths
    if missing:
        raise MissingInputError(
            f"{len(missing)} ROI mask file(s) not found for sub-{subject}: "
            f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}. ROIs come from the "
            f"dataset spec's [rois] (directory {rois.directory!r}) or --roi-mask NAME=PATH."
        )
    return found
