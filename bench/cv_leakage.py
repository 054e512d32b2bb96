"""Alpha chosen by cross-validation with and without the image exclusion, and what it costs.

When training images repeat across runs (ds001506 shows each 5 times), run folds put the same
image in the fitting and the validation part: validation then rewards fitting the image itself,
and alpha comes out too small. bids_recon drops such samples from each fold's fitting part
(``decoding/ridge.py`` :func:`cv_folds`). This bench decodes one simulated participant both ways
(the old folds by patching ``cv_folds``) and prints, per layer, the chosen alpha and the test
feature-decoding accuracy (mean profile correlation) of each.

    python bench/cv_leakage.py                 # simulate (3 presentations per image) and run
    python bench/cv_leakage.py --dataset DS    # on an existing dataset
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from unittest import mock

import pandas as pd

from bids_recon.cli import parse_config
from bids_recon.decoding import ridge
from bids_recon.simulate import simulate_dataset
from bids_recon.workflows.participant import run_participant_level


def run_side(dataset: Path, root: Path, layers: list[str], leaky: bool) -> pd.DataFrame:
    """Decode sub-01 (samples and decode stages); one row per layer: alpha and accuracy."""
    name = "run-folds" if leaky else "image-exclusive"
    out, work = root / name / "out", root / name / "work"
    args = [str(dataset), str(out), "participant", "-w", str(work), "--skip-bids-validation"]
    args += ["--participant-label", "01", "--network", "builtin", "--device", "cpu"]
    args += ["--stages", "samples", "decode", "--layers", *layers]
    config = parse_config(args)
    if leaky:

        def folds(n_samples, cv, groups, labels=None):
            return ridge.cv_folds(n_samples, cv, groups)

        with mock.patch("bids_recon.workflows.decode.cv_folds", folds):
            run_participant_level(config)
    else:
        run_participant_level(config)
    decoder = json.loads(next((out / "sub-01" / "models").glob("*_decoder.json")).read_text())
    table = pd.read_csv(next((out / "sub-01" / "func").glob("*featdecoding_eval.tsv")), sep="\t")
    natural = table[(table["metric"] == "profile_correlation") & (table["set"] == "natural")]
    accuracy = natural.set_index("layer")["value"]
    return pd.DataFrame(
        {
            "layer": layer,
            f"alpha ({name})": decoder["Layers"][layer]["Alpha"],
            f"profile r ({name})": accuracy.get(layer),
        }
        for layer in layers
    ).set_index("layer")


def measure(dataset: Path, root: Path, layers: list[str]) -> pd.DataFrame:
    """Both sides, side by side."""
    return pd.concat([run_side(dataset, root, layers, leaky) for leaky in (True, False)], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, help="existing dataset (default: simulate one)")
    parser.add_argument("--presentations", type=int, default=3)
    parser.add_argument("--layers", nargs="+", default=["conv1", "conv2", "conv3", "fc1", "fc2"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        dataset = args.dataset or simulate_dataset(
            root / "ds", n_subjects=1, seed=0, train_presentations=args.presentations
        )
        print(measure(dataset, root, args.layers).to_string(float_format="{:.4g}".format))


if __name__ == "__main__":
    main()
