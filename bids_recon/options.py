"""Every command-line option, once: flags, type, group, help and config-file kind.

The argument parser (``cli.build_parser``), the ``--config-file`` reader (``config``) and the
README's options table are all made from :data:`OPTIONS`; defaults come from
:class:`bids_recon.config.Config` (``tests/test_cli.py`` checks that README shows this table).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bids_recon._toml import read_toml
from bids_recon.config import DEVICES, RECON_METHODS, STAGES, parse_memory_mb, parse_shard
from bids_recon.errors import UsageError


def absolute_path(value: str) -> Path:
    """An argparse type: a path, user-expanded and absolute."""
    return Path(value).expanduser().absolute()


def positive_int(value: str) -> int:
    """An argparse type: an integer of at least 1."""
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {number}")
    return number


def without(prefix: str) -> Callable[[str], str]:
    """An argparse type: a label with ``prefix`` (``sub-``) removed if present."""

    def parse(label: str) -> str:
        return label.removeprefix(prefix)

    parse.__name__ = f"label without {prefix!r}"
    return parse


def shard(value: str) -> tuple[int, int]:
    """An argparse type: ``K/N``."""
    try:
        return parse_shard(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def memory(value: str) -> float:
    """An argparse type: a size in MB, or with a unit (``16G``)."""
    try:
        return parse_memory_mb(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a size such as 16000 or 16G: {err}") from None


def name_path(value: str) -> tuple[str, Path]:
    """An argparse type: ``NAME=PATH``."""
    name, sep, where = value.partition("=")
    if not sep or not name or not where:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {value!r}")
    return name, absolute_path(where)


@dataclass(frozen=True)
class Option:
    """One command-line option.

    Attributes
    ----------
    dest : str
        The :class:`~bids_recon.config.Config` field it sets.
    flags : tuple of str
        The first is the documented name, the others aliases.
    group : str
        ``--help`` section.
    help : str
        What it does; the same text is in ``--help`` and README (backticks are for README).
    kind : str
        Its value type in a ``--config-file`` (``""``: not allowed there).
    metavar, nargs, choices, type, action
        As for ``argparse.add_argument``.
    """

    dest: str
    flags: tuple[str, ...]
    group: str
    help: str
    kind: str
    metavar: str | None = None
    nargs: str | None = None
    choices: tuple[str, ...] | None = None
    type: Callable[[str], Any] | None = None
    action: str | None = None

    def add_to(self, group: argparse._ArgumentGroup) -> None:
        """Add the option to a parser group (its default stays 'not given')."""
        extra: dict[str, Any] = {"dest": self.dest, "help": self.help.replace("`", "")}
        for key in ("metavar", "nargs", "choices", "type", "action"):
            if getattr(self, key) is not None:
                extra[key] = getattr(self, key)
        group.add_argument(*self.flags, **extra)

    def usage(self) -> str:
        """The option as README shows it: flags, then a value placeholder."""
        value = ""
        if self.action is None:
            value = self.metavar or "{" + ",".join(self.choices or ()) + "}"
            value = f" {value} [...]" if self.nargs == "+" else f" {value}"
        return (
            ", ".join(f"`{flag}`" for flag in self.flags[:-1])
            + (", " if len(self.flags) > 1 else "")
            + f"`{self.flags[-1]}{value}`"
        )


SELECT, MODEL, RESOURCES, RUN = "Selecting data", "Model", "Resources", "Run control"

OPTIONS: tuple[Option, ...] = (
    Option("participant_label", ("--participant-label", "--participant_label"), SELECT,
           "participants, with or without `sub-`; all when omitted. Every label is checked "
           "before any work; an unknown one fails listing the labels that exist",
           "labels", "LABEL", "+", type=without("sub-")),
    Option("session_label", ("--session-label", "--session-id"), SELECT,
           "sessions, with or without `ses-` (default: all)", "labels", "LABEL", "+",
           type=without("ses-")),
    Option("task_id", ("-t", "--task-id"), SELECT,
           "tasks, with or without `task-` (default: all in the dataset spec)", "labels",
           "TASK", "+", type=without("task-")),
    Option("bids_filter_file", ("--bids-filter-file",), SELECT,
           "JSON pybids queries (fMRIPrep format) narrowing the inputs", "path", "FILE",
           type=absolute_path),
    Option("bids_database_dir", ("--bids-database-dir",), SELECT,
           "reusable pybids index database", "path", "DIR", type=absolute_path),
    Option("dataset_spec", ("--dataset-spec",), SELECT,
           "dataset spec: a built-in name or a TOML file (see Dataset specs); detected from "
           "the layout when omitted", "spec", "{ds001506|PATH}"),
    Option("stimuli_dir", ("--stimuli-dir",), SELECT,
           "stimulus images (default: `BIDS_DIR/stimuli`)", "path", "DIR", type=absolute_path),
    Option("derivatives", ("--derivatives",), SELECT,
           "precomputed derivatives: `fmriprep=PATH` samples fMRIPrep's `desc-preproc_bold` "
           "instead of raw BOLD; `bdata=DIR` reads the lab's preprocessed BData files instead "
           "of BOLD (see Running on ds001506); `rois=PATH` looks for the spec's ROI masks "
           "below PATH instead of BIDS_DIR", "paths", "NAME=PATH", "+", type=name_path),
    Option("space", ("--space",), SELECT,
           "output space of the fMRIPrep BOLD (default: `T1w`, native)", "str", "SPACE"),
    Option("confounds", ("--confounds",), SELECT,
           "regress fMRIPrep confounds, as nilearn `load_confounds` strategies (e.g. "
           "`motion wm_csf`); needs `--derivatives fmriprep=PATH`", "labels", "STRATEGY", "+"),
    Option("sets", ("--sets",), SELECT,
           "test sets to run (default: every test set with data; absent ones are skipped "
           "with a warning in the log and the report; a missing training set is an error). A "
           "set named here that has no runs stops the run (exit 18)", "labels", "SET", "+"),
    Option("roi", ("--roi",), SELECT,
           "ROIs to analyse, from the spec's `[rois.combine]` or `--roi-mask` (default: the "
           "spec's default, `VC` for ds001506; its spec also has `LVC` = V1-V3, `HVC`, `V1` "
           "... `PPA`). Several ROIs are decoded together from one pass of the images through "
           "the network", "labels", "NAME", "+"),
    Option("roi_mask", ("--roi-mask",), SELECT,
           "a user ROI mask (NIfTI); masks on another grid are resampled to the BOLD grid "
           "(nearest neighbour)", "paths", "NAME=PATH", "+", type=name_path),
    Option("skip_bids_validation", ("--skip-bids-validation", "--skip_bids_validation"),
           SELECT, "do not run the BIDS validator on the input", "bool", action="store_true"),
    Option("network", ("--network",), MODEL,
           "feature network: `vgg19` (the paper's), `builtin` (small, for demos and tests) or "
           "a torchvision model name (default: vgg19)", "str", "NAME"),
    Option("weights", ("--weights",), MODEL,
           "local weights file of `--network` (nothing is downloaded): for vgg19 the lab's "
           "conversion of the Caffe VGG19 (`VGG_ILSVRC_19_layers.pt`, bdpy format) or "
           "torchvision's `vgg19-dcbb9e9d.pth`; without it, a file of those names in "
           "`$BIDS_RECON_WEIGHTS_DIR` (`/opt/weights` in the container image), then in torch's "
           "hub cache. Its provenance is logged and written to the decoder sidecars and the "
           "report", "path", "PATH", type=absolute_path),
    Option("layers", ("--layers",), MODEL,
           "layers to decode (default: all of the network's; `conv1_1 ... fc8` for vgg19; "
           "module paths for other torchvision models)", "labels", "LAYER", "+"),
    Option("preprocessing", ("--preprocessing",), MODEL,
           "image preprocessing; states the pairing with `--weights` and skips the pairing "
           "check. Default: what the weights imply, `torchvision` for torchvision's published "
           "files, `caffe` (the paper's: BGR, 0-255 minus the mean pixel) for the lab's VGG19, "
           "VGG19 files of unknown provenance and builtin, checked on a neutral image (a "
           "wrong pairing stops the run, exit 64)", "str",
           choices=("caffe", "torchvision")),
    Option("decoder", ("--decoder",), MODEL,
           "`ridge` (default): exact dual-form ridge, one alpha per layer by cross-validation "
           "over runs; `voxel-selection`: the paper's FastL2LiR protocol (500 voxels per "
           "unit, alpha 100)", "str", choices=("ridge", "voxel-selection")),
    Option("alphas", ("--alphas",), MODEL,
           "ridge alpha grid (default: 33 values from 0.1 to 1e7, four per decade)", "floats",
           "ALPHA", "+", type=float),
    Option("cv_folds", ("--cv-folds",), MODEL,
           "cross-validation folds of whole runs (default: 5); a fold's fitting part drops "
           "the samples whose image is in its validation part", "int", "N",
           type=positive_int),
    Option("cv_units", ("--cv-units",), MODEL,
           "units per layer whose Gram matrix estimates the CV error of large layers "
           "(default: 10000; smaller layers use all)", "int", "N", type=positive_int),
    Option("selection_voxels", ("--selection-voxels",), MODEL,
           "voxel-selection decoder: voxels per unit (default: 500)", "int", "N",
           type=positive_int),
    Option("selection_chunk", ("--selection-chunk",), MODEL,
           "voxel-selection decoder: units solved together; bounds memory (default: 4096)",
           "int", "N", type=positive_int),
    Option("selection_alpha", ("--selection-alpha",), MODEL,
           "voxel-selection decoder: alpha (default: 100)", "float", "ALPHA", type=float),
    Option("feature_sd", ("--feature-sd",), MODEL,
           'JSON `{"layer": sd}` of reference SDs for the feature-SD correction (default: '
           "estimated from the training images' true features)", "path", "FILE",
           type=absolute_path),
    Option("recon_method", ("--recon-method",), MODEL,
           "`lbfgs` (default): L-BFGS on pixels within 0-255, from the mean colour (the "
           "paper's without generator); `gd`: gradient descent with momentum on pixels; "
           "`generator`: the paper's deep generator prior (needs `--generator-weights`)", "str",
           choices=RECON_METHODS),
    Option("recon_iterations", ("--recon-iterations",), MODEL,
           "optimizer iterations (default: 200, the paper's, for vgg19; 50 for builtin)",
           "int", "N", type=positive_int),
    Option("recon_batch_size", ("--recon-batch-size",), MODEL,
           "images optimized together; bounds memory (default: 8)", "int", "N",
           type=positive_int),
    Option("recon_layers", ("--recon-layers",), MODEL,
           "layers whose features are matched (default: all decoded layers)", "labels",
           "LAYER", "+"),
    Option("recon_tv", ("--recon-tv",), MODEL,
           "weight of a total-variation image prior (default: 0, the paper's)", "float", "W",
           type=float),
    Option("recon_l2", ("--recon-l2",), MODEL,
           "weight of a squared-norm image prior (default: 0)", "float", "W", type=float),
    Option("recon_jitter", ("--recon-jitter",), MODEL,
           "random shifts in pixels per gradient-descent step, `--recon-method gd` (default: 0)",
           "int", "PIXELS", type=int),
    Option("generator_weights", ("--generator-weights",), MODEL,
           "the Dosovitskiy-Brox fc7 generator as the lab distributes it (bdpy "
           "`AlexNetGenerator` state dict, `generator_relu7.pt`); without it, that file in "
           "`$BIDS_RECON_WEIGHTS_DIR`, else `generator` is refused (exit 64)", "path", "PATH",
           type=absolute_path),
    Option("generator_act_range", ("--generator-act-range",), MODEL,
           "per-unit upper bounds of the generator's latent (`act_range/3x/fc7.txt`, 4,096 "
           "numbers, or `.npy`), as the paper; without it, that file in "
           "`$BIDS_RECON_WEIGHTS_DIR`, else the latent is bounded below by 0 only, which the "
           "log and the report say", "path", "PATH", type=absolute_path),
    Option("work_dir", ("-w", "--work-dir"), RESOURCES,
           "caches and resumable intermediate results (default: `./work`)", "path", "DIR",
           type=absolute_path),
    Option("nprocs", ("--nprocs", "--nthreads", "--n_cpus", "--n-cpus"), RESOURCES,
           "CPUs the job may use (default: the CPUs it is allowed to run on, so SLURM's "
           "allocation), for image-decoding threads", "int", "N", type=positive_int),
    Option("omp_nthreads", ("--omp-nthreads",), RESOURCES,
           "threads for torch and BLAS (default: `--nprocs`)", "int", "N", type=positive_int),
    Option("mem_mb", ("--mem", "--mem-mb", "--mem_mb"), RESOURCES,
           "memory limit, in MB or with a unit (`16G`); default: the job's cgroup limit, else "
           "the machine's memory. Before any output, the decode and reconstruction stages' "
           "peaks are estimated; batches are halved until they fit, and a stage that cannot "
           "fit stops the run (exit 75) naming its largest arrays", "float", "SIZE",
           type=memory),
    Option("shard", ("--shard",), RESOURCES,
           "do the K-th of N parts of the reconstructions (every N-th batch), for job "
           "arrays; the job that completes the last part evaluates and writes the report "
           "(see Running on a cluster)", "shard", "K/N", type=shard),
    Option("batch_size", ("--batch-size",), RESOURCES,
           "images per network batch (default: 16)", "int", "N", type=positive_int),
    Option("feature_cache_mb", ("--feature-cache-mb",), RESOURCES,
           "work-folder disk for keeping whole layers of training features (float16, "
           "smallest layers first; never more than the free space less 2 GB): layers kept need "
           "one network pass, the others two. Default 16384 MB (VGG19: all 19 layers of 500 "
           "images). Also the budget for the feature batches `--shard` jobs share",
           "float", "MB", type=float),
    Option("device", ("--device",), RESOURCES,
           "compute device; `auto` (default) takes CUDA when visible, which then runs in "
           "full float32", "str", choices=DEVICES),
    Option("stages", ("--stages",), RUN,
           f"subset of `{' '.join(STAGES)}` (default: all), e.g. decode on CPU nodes and "
           "reconstruct on GPU nodes", "labels", "STAGE", "+"),
    Option("random_seed", ("--random-seed",), RUN,
           "seed for numpy and torch (default: 0)", "int", "N", type=int),
    Option("config_file", ("--config-file",), RUN,
           "TOML file of options; command-line options win. Every run saves its resolved "
           "config as `OUTPUT_DIR/logs/config-<run>.toml`, which can be passed back here", "",
           "FILE", type=absolute_path),
    Option("stop_on_first_crash", ("--stop-on-first-crash",), RUN,
           "stop at the first failing participant (default: continue, fail at the end)",
           "bool", action="store_true"),
    Option("reports_only", ("--reports-only",), RUN, "only rebuild the reports", "bool",
           action="store_true"),
    Option("notrack", ("--notrack",), RUN,
           "accepted for compatibility; bids_recon collects no telemetry", "bool",
           action="store_true"),
    Option("verbose", ("-v", "--verbose"), RUN,
           "more log output (`-v`: debug, `-vv`: also libraries)", "int", action="count"),
)  # fmt: skip

FILE_OPTION_KINDS: dict[str, str] = {o.dest: o.kind for o in OPTIONS if o.kind}


def read_config_file(path: Path) -> dict[str, Any]:
    """Read ``--config-file``: a TOML file whose keys are option names (underscores or dashes).

    Options may sit at the top level or in a ``[bids_recon]`` table (the form saved in logs/, so a
    saved config can be passed back). Relative paths are relative to the file's folder.

    Raises
    ------
    UsageError
        The file is missing or invalid, or a key is unknown or has the wrong type.

    """
    data = read_toml(path, f"Config file {path}")
    data = data.get("bids_recon", data)
    ignored = {"bids_dir", "output_dir", "analysis_level", "run_uuid", "version"}
    values: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = raw_key.replace("-", "_")
        if key in ignored:
            continue
        kind = FILE_OPTION_KINDS.get(key)
        if kind is None:
            raise UsageError(
                f"Config file {path}: unknown option {raw_key!r}; "
                f"known: {', '.join(sorted(FILE_OPTION_KINDS))}"
            )
        values[key] = _coerce(path, raw_key, kind, value)
    return values


def _coerce(path: Path, key: str, kind: str, value: Any) -> Any:
    def bad(expected: str) -> UsageError:
        return UsageError(f"Config file {path}: {key} must be {expected}, got {value!r}")

    base = path.parent
    if kind == "labels":
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, (str, int)) for v in items):
            raise bad("a string or a list of strings")
        return tuple(str(v) for v in items)
    if kind == "path":
        if not isinstance(value, str):
            raise bad("a path string")
        return (base / Path(value).expanduser()).absolute()
    if kind == "spec":  # a built-in spec name, or a spec file (relative to the config file)
        if not isinstance(value, str):
            raise bad("a built-in spec name or a path")
        if value.startswith("builtin:") or not (value.endswith(".toml") or "/" in value):
            return value
        return str((base / Path(value).expanduser()).absolute())
    if kind == "paths":
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise bad("a table of NAME = PATH")
        return {k: (base / Path(v).expanduser()).absolute() for k, v in value.items()}
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if kind in ("float", "floats"):
        items = value if kind == "floats" else [value]
        if not isinstance(items, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in items
        ):
            raise bad("a number" if kind == "float" else "a list of numbers")
        floats = tuple(float(v) for v in items)
        return floats if kind == "floats" else floats[0]
    if kind == "shard":
        try:
            return parse_shard(value if isinstance(value, str) else "/".join(map(str, value)))
        except (TypeError, ValueError) as err:
            raise bad("'K/N' with 1 <= K <= N") from err
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if not isinstance(value, str):
        raise bad("a string")
    return value


TABLE_START = "<!-- options table: generated from bids_recon/options.py; `make options-table` "
TABLE_END = "<!-- end of options table -->"


def options_table() -> str:
    """The README's options table (markdown), one row per option, in ``--help`` order."""
    rows = ["| option | meaning |", "|---|---|"]
    rows += [f"| {o.usage()} | {o.help.replace('|', '&#124;')} |" for o in OPTIONS]
    return "\n".join(rows) + "\n"


def readme_table(text: str) -> str:
    """The options table as a README holds it (between its two marker lines)."""
    start = text.index("\n", text.index(TABLE_START)) + 1
    return text[start : text.index(TABLE_END)]


def update_readme(path: Path) -> None:
    """Rewrite the options table of the README at ``path`` from :data:`OPTIONS`."""
    text = path.read_text(encoding="utf-8")
    old = readme_table(text)
    path.write_text(text.replace(old, options_table(), 1), encoding="utf-8")
