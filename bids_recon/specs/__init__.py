"""Dataset specs: what differs between datasets, kept in TOML data instead of code.

A spec names the runs of the training set and of each test set (pybids entity filters whose
values are regular expressions matched against the whole label), which events rows are stimulus
blocks, which column names the stimulus, the haemodynamic delay and per-run cleaning, and where
the ROI masks are and how sub-ROIs combine. ``--dataset-spec ds001506`` selects the built-in spec
for OpenNeuro ds001506; ``--dataset-spec PATH`` a user's file. README.md documents the format with
a worked example.
"""

from __future__ import annotations

import dataclasses
import logging
import re

try:  # the regular-expression parser: re._parser from Python 3.11, sre_parse before
    from re import _constants as _sre
    from re import _parser as _sre_parse
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as _sre
    import sre_parse as _sre_parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bids_recon._toml import read_toml
from bids_recon.errors import UsageError

LOGGER = logging.getLogger(__name__)

BUILTIN_DIR = Path(__file__).parent
BUILTIN_SPECS: dict[str, Path] = {p.stem: p for p in sorted(BUILTIN_DIR.glob("*.toml"))}

ROLES = ("training", "test")
DETREND_METHODS = ("linear", "highpass")
NORMALIZATIONS = ("zscore", "psc")
REPEAT_RULES = ("types", "previous")
STIMULUS_SOURCES = ("column", "category")


@dataclass(frozen=True)
class EventSelection:
    """Which rows of an events file are stimulus blocks, and how they are labelled.

    Attributes
    ----------
    type_column : str
        Column that says what an event is (``event_type`` in ds001506, ``trial_type`` in BIDS).
    block_types : tuple of str
        Values of ``type_column`` that mark a stimulus block.
    repeat_types : tuple of str
        Values that mark one-back repeat blocks (excluded unless ``include_repeats``).
    repeats : {"types", "previous"}
        How repeat blocks are recognised: by ``repeat_types`` (default), or, for one-back designs
        whose repeats are ordinary stimulus rows, ``previous``: a block showing the same
        stimulus as the block before it in the run.
    include_repeats : bool
        Keep repeat blocks as samples.
    stimulus_column : str
        Column holding the stimulus *name* (never a float id).
    stimulus_map : dict of str to str
        Optional mapping from the column's values to stimulus names (ds001506 imagery targets).
    stimulus_from : {"column", "category"}
        ``column`` (default): the column (after ``stimulus_map``) names the stimulus.
        ``category``: the column names a category (an ImageNet synset such as ``n01443537``, or
        its number ``1443537``), and the stimulus is the one image of that category in the test
        set ``category_set`` (images named ``<synset>_<number>``).
    category_set : str
        The test set whose images ``stimulus_from = "category"`` picks from.
    no_image : tuple of str
        Stimulus names that have no image (e.g. a fixation target): kept as blocks, never resolved
        to an image or evaluated.

    """

    type_column: str = "trial_type"
    block_types: tuple[str, ...] = ("stimulus",)
    repeat_types: tuple[str, ...] = ()
    repeats: str = "types"
    include_repeats: bool = False
    stimulus_column: str = "stim_file"
    stimulus_map: Mapping[str, str] = field(default_factory=dict)
    stimulus_from: str = "column"
    category_set: str = ""
    no_image: tuple[str, ...] = ()


@dataclass(frozen=True)
class SetSpec:
    """One named set of runs: the training set or a test set.

    ``bdata`` is the tag of the set's file among the lab's preprocessed files
    (``sub-<label>_<bdata>_*.h5``, read with ``--derivatives bdata=DIR``).
    """

    name: str
    role: str
    filters: Mapping[str, str]
    events: EventSelection
    bdata: str = ""


@dataclass(frozen=True)
class FmriSpec:
    """Per-run cleaning and sampling of BOLD data (docs/method.md §1)."""

    hrf_delay: float = 4.0
    detrend: str = "linear"
    high_pass: float = 0.01
    normalize: str = "zscore"
    baseline_duration: float = 32.0


@dataclass(frozen=True)
class RoiSpec:
    """Where ROI masks live and how sub-ROIs combine into the analysed ROIs."""

    directory: str = "sourcedata/sub-{subject}/anat"
    pattern: str = "sub-{subject}_mask_{hemi}_{roi}.nii.gz"
    hemispheres: tuple[str, ...] = ()
    combine: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    default: str = "VC"


@dataclass(frozen=True)
class DatasetSpec:
    """A whole dataset spec, as loaded and validated from TOML."""

    name: str
    description: str
    source: str
    detect: tuple[str, ...]
    fmri: FmriSpec
    sets: Mapping[str, SetSpec]
    rois: RoiSpec
    stimulus_extensions: tuple[str, ...]

    @property
    def training_set(self) -> SetSpec:
        """The one set whose role is ``training``."""
        return next(s for s in self.sets.values() if s.role == "training")

    @property
    def test_sets(self) -> list[SetSpec]:
        """The sets whose role is ``test``, in file order."""
        return [s for s in self.sets.values() if s.role == "test"]

    def with_sets(self, names: Iterable[str]) -> DatasetSpec:
        """The spec restricted to the sets ``names`` (file order kept)."""
        wanted = set(names)
        return dataclasses.replace(self, sets={k: v for k, v in self.sets.items() if k in wanted})

    def choose_test_sets(self, names: Sequence[str]) -> DatasetSpec:
        """The spec with the training set and the test sets ``names`` (``--sets``); all if empty.

        Raises
        ------
        UsageError
            A name is not a test set of the spec.
        """
        if not names:
            return self
        tests = [s.name for s in self.test_sets]
        unknown = [n for n in names if n not in tests]
        if unknown:
            raise UsageError(
                f"--sets {' '.join(unknown)}: not a test set of dataset spec {self.name} "
                f"(test sets: {', '.join(tests)})"
            )
        return self.with_sets([self.training_set.name, *names])

    def matches_layout(self, bids_dir: Path) -> bool:
        """Whether ``bids_dir`` is laid out as this spec's ``detect`` globs describe."""
        return bool(self.detect) and all(
            next(bids_dir.glob(pattern), None) is not None for pattern in self.detect
        )


_TOP_KEYS = {"name", "description", "detect", "fmri", "events", "sets", "rois", "stimuli"}
_EVENT_KEYS = {f for f in EventSelection.__dataclass_fields__}
_SET_KEYS = {"role", "filters", "bdata"} | _EVENT_KEYS
_FMRI_KEYS = set(FmriSpec.__dataclass_fields__)
_ROI_KEYS = set(RoiSpec.__dataclass_fields__)
_STIMULI_KEYS = {"extensions"}
_DEFAULT_EXTENSIONS = (".JPEG", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".bmp")


class _Reader:
    """Type-checked access to a parsed TOML table, naming the file and key in every error."""

    def __init__(self, source: str, table: Mapping[str, Any], where: str, allowed: set[str]):
        self.source, self.table, self.where = source, table, where
        unknown = sorted(set(table) - allowed)
        if unknown:
            self.fail(f"unknown key(s) {unknown}; allowed: {sorted(allowed)}")

    def fail(self, message: str, key: str | None = None) -> None:
        place = ".".join(p for p in (self.where, key) if p) or "top level"
        raise UsageError(f"Dataset spec {self.source}: [{place}] {message}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        value = self.table.get(key, default)
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            self.fail(f"expected a number, got {value!r}", key)
        if not isinstance(value, kind):
            names = {
                dict: "a table",
                list: "a list",
                str: "a string",
                bool: "true or false",
                (int, float): "a number",
            }.get(kind, str(kind))
            self.fail(f"expected {names}, got {type(value).__name__} {value!r}", key)
        return value

    def strings(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """A list whose items are strings or numbers, returned as strings (event codes)."""
        values = self.get(key, list, list(default))
        for item in values:
            if isinstance(item, bool) or not isinstance(item, (str, int, float)):
                self.fail(f"list items must be strings or numbers, got {item!r}", key)
        return tuple(canonical_code(v) for v in values)

    def table_of(self, key: str, allowed: set[str]) -> _Reader:
        sub = self.get(key, dict, {})
        where = ".".join(p for p in (self.where, key) if p)
        return _Reader(self.source, sub, where, allowed)

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.get(key, str, default)
        if value not in choices:
            self.fail(f"{value!r} is not one of {list(choices)}", key)
        return value


def canonical_code(value: str | int | float) -> str:
    """Canonical text of an event code: ``1``, ``1.0``, ``"1"`` and ``" 1.0"`` compare equal.

    Integral numbers (given as numbers or numeric text) become their integer text; anything else
    is returned as stripped text.
    """
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


def _event_selection(reader: _Reader, base: EventSelection) -> EventSelection:
    mapping = reader.get("stimulus_map", dict, dict(base.stimulus_map))
    for key, value in mapping.items():
        if not isinstance(value, str):
            reader.fail(
                f"values must be stimulus names (strings); {key!r} -> {value!r}", "stimulus_map"
            )
    return EventSelection(
        type_column=reader.get("type_column", str, base.type_column),
        block_types=reader.strings("block_types", base.block_types),
        repeat_types=reader.strings("repeat_types", base.repeat_types),
        repeats=reader.choice("repeats", REPEAT_RULES, base.repeats),
        include_repeats=reader.get("include_repeats", bool, base.include_repeats),
        stimulus_column=reader.get("stimulus_column", str, base.stimulus_column),
        stimulus_map={canonical_code(k): v for k, v in mapping.items()},
        stimulus_from=reader.choice("stimulus_from", STIMULUS_SOURCES, base.stimulus_from),
        category_set=reader.get("category_set", str, base.category_set),
        no_image=reader.strings("no_image", base.no_image),
    )


def _filters(reader: _Reader) -> dict[str, str]:
    filters = reader.get("filters", dict, {})
    for entity, pattern in filters.items():
        if not isinstance(pattern, str):
            reader.fail(
                f"filter values are regular expressions (strings); {entity} = {pattern!r}",
                "filters",
            )
        try:
            re.compile(pattern)
        except re.error as err:
            reader.fail(
                f"filter {entity} = {pattern!r} is not a valid regular expression: {err}", "filters"
            )
        if nested_repetition(pattern):
            reader.fail(
                f"filter {entity} = {pattern!r} repeats a group that itself repeats or "
                "alternates, which can take exponential time on some labels; write it without "
                r"nesting (e.g. \w+ for (\w+)+, [ab]+ for (a|b)+)",
                "filters",
            )
    return dict(filters)


_REPEATS = {_sre.MAX_REPEAT, _sre.MIN_REPEAT} | (
    {_sre.POSSESSIVE_REPEAT} if hasattr(_sre, "POSSESSIVE_REPEAT") else set()
)


def nested_repetition(pattern: str) -> bool:
    r"""Whether a regular expression repeats a part that repeats or alternates inside.

    Such patterns (``(\w+)+X``, ``(a|aa)*``) are the ones whose backtracking can take
    exponential time; spec filters are refused when they have one. Single repeats
    (``perceptionNaturalImageTraining\d+``) and top-level alternatives (``9|10``) are fine.
    """

    def walk(items, inside: bool) -> bool:
        for op, value in items:
            if op in _REPEATS:
                if inside or walk(value[2], True):
                    return True
            elif op is _sre.BRANCH:
                if inside or any(walk(branch, inside) for branch in value[1]):
                    return True
            elif op is _sre.SUBPATTERN:
                if walk(value[-1], inside):
                    return True
            elif op in (_sre.ASSERT, _sre.ASSERT_NOT):
                if walk(value[1], inside):
                    return True
        return False

    return walk(_sre_parse.parse(pattern), False)


def parse_spec(data: Mapping[str, Any], source: str) -> DatasetSpec:
    """Validate a parsed TOML mapping and build a :class:`DatasetSpec`.

    Parameters
    ----------
    data : mapping
        The parsed TOML document.
    source : str
        Where it came from (a path or ``builtin:<name>``), used in error messages.

    Raises
    ------
    UsageError
        Unknown keys, wrong types, invalid choices or regexes, or not exactly one training set.

    """
    top = _Reader(source, data, "", _TOP_KEYS)
    fmri_r = top.table_of("fmri", _FMRI_KEYS)
    fmri = FmriSpec(
        hrf_delay=float(fmri_r.get("hrf_delay", (int, float), FmriSpec.hrf_delay)),
        detrend=fmri_r.choice("detrend", DETREND_METHODS, FmriSpec.detrend),
        high_pass=float(fmri_r.get("high_pass", (int, float), FmriSpec.high_pass)),
        normalize=fmri_r.choice("normalize", NORMALIZATIONS, FmriSpec.normalize),
        baseline_duration=float(
            fmri_r.get("baseline_duration", (int, float), FmriSpec.baseline_duration)
        ),
    )
    if fmri.hrf_delay < 0:
        fmri_r.fail(f"must be >= 0 seconds, got {fmri.hrf_delay}", "hrf_delay")

    base_events = _event_selection(top.table_of("events", _EVENT_KEYS), EventSelection())
    sets_table = top.get("sets", dict, {})
    sets: dict[str, SetSpec] = {}
    for name, table in sets_table.items():
        if not re.fullmatch(r"[A-Za-z0-9]+", name):
            top.fail(
                f"set names must be alphanumeric (they become file labels), got {name!r}", "sets"
            )
        if not isinstance(table, dict):
            top.fail(f"expected a table, got {table!r}", f"sets.{name}")
        reader = _Reader(source, table, f"sets.{name}", _SET_KEYS)
        sets[name] = SetSpec(
            name=name,
            role=reader.choice("role", ROLES, "test"),
            filters=_filters(reader),
            events=_event_selection(reader, base_events),
            bdata=reader.get("bdata", str, ""),
        )
    for name, set_spec in sets.items():
        events = set_spec.events
        if events.stimulus_from != "category":
            continue
        target = sets.get(events.category_set)
        if target is None or target.role != "test" or target.events.stimulus_from == "category":
            top.fail(
                f'stimulus_from = "category" needs category_set = the name of a test set whose '
                f"stimuli are images; got {events.category_set!r}",
                f"sets.{name}",
            )
    n_training = sum(s.role == "training" for s in sets.values())
    if n_training != 1:
        top.fail(f'needs exactly one set with role = "training", found {n_training}', "sets")
    if not any(s.role == "test" for s in sets.values()):
        top.fail('needs at least one set with role = "test"', "sets")

    rois_r = top.table_of("rois", _ROI_KEYS)
    combine = rois_r.get("combine", dict, {})
    for roi, parts in combine.items():
        if not isinstance(parts, list) or not all(isinstance(p, str) for p in parts) or not parts:
            rois_r.fail(f"{roi} must list sub-ROI names, got {parts!r}", "combine")
    rois = RoiSpec(
        directory=rois_r.get("directory", str, RoiSpec.directory),
        pattern=rois_r.get("pattern", str, RoiSpec.pattern),
        hemispheres=rois_r.strings("hemispheres", ()),
        combine={roi: tuple(parts) for roi, parts in combine.items()},
        default=rois_r.get("default", str, RoiSpec.default),
    )
    if "{roi}" not in rois.pattern:
        rois_r.fail(f"pattern must contain {{roi}}, got {rois.pattern!r}", "pattern")
    if rois.hemispheres and "{hemi}" not in rois.pattern:
        rois_r.fail("hemispheres are listed but pattern has no {hemi}", "pattern")

    stimuli_r = top.table_of("stimuli", _STIMULI_KEYS)
    extensions = stimuli_r.strings("extensions", _DEFAULT_EXTENSIONS)
    return DatasetSpec(
        name=top.get("name", str),
        description=top.get("description", str, ""),
        source=source,
        detect=top.strings("detect", ()),
        fmri=fmri,
        sets=sets,
        rois=rois,
        stimulus_extensions=extensions,
    )


def load_spec(path: Path, source: str | None = None) -> DatasetSpec:
    """Read and validate a dataset spec file.

    Raises
    ------
    UsageError
        The file is missing, is not valid TOML, or fails validation; the message names the file.

    """
    source = source or str(path)
    return parse_spec(read_toml(path, f"Dataset spec {source}"), source)


def load_builtin_spec(name: str) -> DatasetSpec:
    """Load a spec shipped with the package (``ds001506``)."""
    return load_spec(BUILTIN_SPECS[name], source=f"builtin:{name}")


HOW_TO_WRITE_A_SPEC = (
    "Write a dataset spec (TOML) naming the training and test runs, the events columns and the "
    "ROI masks, and pass it with --dataset-spec PATH; README.md, section 'Dataset specs', has a "
    "worked example. Built-in specs: {builtins}."
)


def resolve_spec(value: str | None, bids_dir: Path) -> DatasetSpec:
    """Find the spec for a run: a built-in name, a file, or auto-detection from the layout.

    Parameters
    ----------
    value : str or None
        ``--dataset-spec`` as given: a built-in name (optionally ``builtin:<name>``), a path,
        or None to auto-detect.
    bids_dir : Path
        The input dataset, inspected when ``value`` is None.

    Raises
    ------
    UsageError
        ``value`` names neither a built-in spec nor a file, or no built-in spec matches the
        layout (the message explains how to write one).

    """
    builtins = ", ".join(BUILTIN_SPECS)
    if value is None:
        for name in BUILTIN_SPECS:
            spec = load_builtin_spec(name)
            if spec.matches_layout(bids_dir):
                LOGGER.info(
                    "Dataset at %s is laid out like %s: using the built-in spec '%s'.",
                    bids_dir,
                    name,
                    name,
                )
                return spec
        raise UsageError(
            f"No dataset spec given and {bids_dir} is not laid out like a dataset with a built-in "
            f"spec. " + HOW_TO_WRITE_A_SPEC.format(builtins=builtins)
        )
    name = value.removeprefix("builtin:")  # saved configs record built-ins as builtin:<name>
    if name in BUILTIN_SPECS:
        return load_builtin_spec(name)
    path = Path(value).expanduser()
    if not path.is_file():
        raise UsageError(
            f"--dataset-spec {value!r} is neither a built-in spec ({builtins}) nor a file."
        )
    return load_spec(path.absolute())
