"""Evaluation of reconstructions (the paper's protocol, docs/method.md §5).

For each set, source (decoded or oracle) and ROI, the display images written by the recon stage
are compared with the stimulus images (resized to the reconstruction size): pairwise
identification by pixel correlation (candidates: the other images of the same set; ties fail;
chance 0.5), pixel correlation, SSIM, and pairwise identification by the correlation of DNN
features per layer. Per-stimulus rows and per-set summaries (mean, bootstrap 95% CI over
stimuli, one-sided Wilcoxon test against chance for identification) are written as TSV.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from bids_recon.config import Config
from bids_recon.evaluation.metrics import (
    above_chance_p,
    bootstrap_ci,
    pairwise_identification,
    ssim,
)
from bids_recon.features.networks import TappedNetwork
from bids_recon.io.outputs import participant_dir, recon_eval_paths, write_table

LOGGER = logging.getLogger(__name__)

RECON_EVAL_COLUMNS = {
    "roi": "ROI of the decoded features ('n/a' for oracle reconstructions).",
    "set": "Test set.",
    "source": "decoded: reconstructed from decoded features; oracle: from true features.",
    "stimulus": "Original stimulus name.",
    "metric": "pixel_identification, pixel_correlation, ssim or feature_identification.",
    "layer": "Network layer for feature_identification, else n/a.",
    "value": "Value for this stimulus (identification: fraction of candidates beaten).",
}
RECON_SUMMARY_COLUMNS = {
    "roi": RECON_EVAL_COLUMNS["roi"],
    "set": "Test set.",
    "source": RECON_EVAL_COLUMNS["source"],
    "metric": RECON_EVAL_COLUMNS["metric"],
    "layer": RECON_EVAL_COLUMNS["layer"],
    "value": "Mean over stimuli.",
    "ci_low": "Lower bound of the bootstrap 95% confidence interval of the mean (over stimuli).",
    "ci_high": "Upper bound of the bootstrap 95% confidence interval of the mean.",
    "p_value": "One-sided Wilcoxon signed-rank p-value against chance (0.5), identification only.",
    "n": "Number of stimuli.",
}


def _groups(output_dir: Path, label: str) -> dict[tuple[str, str, str], list[tuple[str, Path]]]:
    groups: dict[tuple[str, str, str], list[tuple[str, Path]]] = {}
    for sidecar in sorted(participant_dir(output_dir, label, "recon").glob("*_image.json")):
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        roi = "n/a"
        if meta["Source"] == "decoded":
            roi = sidecar.name.split("_roi-")[1].split("_")[0]
        key = (roi, meta["Set"], meta["Source"])
        groups.setdefault(key, []).append((meta["StimulusName"], sidecar.with_suffix(".png")))
    return groups


def _rgb(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    with Image.open(path) as image:
        rgb = image.convert("RGB")
        return np.asarray(rgb.resize(size, Image.Resampling.BICUBIC) if size else rgb)


def _features(network: TappedNetwork, images: np.ndarray, device) -> dict[str, np.ndarray]:
    tensors = torch.stack(
        [network.preprocessing.image_to_tensor(Image.fromarray(i)) for i in images]
    ).to(device)
    with torch.no_grad():
        return {k: v.flatten(1).cpu().numpy() for k, v in network.to(device)(tensors).items()}


def evaluate_reconstructions(
    config: Config, label: str, stimulus_files: dict[str, Path], network: TappedNetwork, device
) -> None:
    """Compute the reconstruction metrics of one participant and write both tables."""
    rows: list[dict[str, object]] = []
    for (roi, set_name, source), items in _groups(config.output_dir, label).items():
        items = [(name, path) for name, path in items if name in stimulus_files]
        if len(items) < 2:
            continue
        recon = np.stack([_rgb(path) for _, path in items])
        size = recon.shape[2], recon.shape[1]
        true = np.stack([_rgb(stimulus_files[name], size) for name, _ in items])
        names = [name for name, _ in items]
        per_metric = {
            ("pixel_identification", "n/a"): pairwise_identification(recon, true),
            ("pixel_correlation", "n/a"): np.array(
                [
                    np.corrcoef(r.ravel().astype(float), t.ravel().astype(float))[0, 1]
                    for r, t in zip(recon, true, strict=True)
                ]
            ),
            ("ssim", "n/a"): np.array([ssim(r, t) for r, t in zip(recon, true, strict=True)]),
        }
        f_recon, f_true = _features(network, recon, device), _features(network, true, device)
        for layer in network.layers:
            per_metric[("feature_identification", layer)] = pairwise_identification(
                f_recon[layer], f_true[layer]
            )
        for (metric, layer), values in per_metric.items():
            rows.extend(
                {
                    "roi": roi,
                    "set": set_name,
                    "source": source,
                    "stimulus": name,
                    "metric": metric,
                    "layer": layer,
                    "value": float(v),
                }
                for name, v in zip(names, values, strict=True)
            )
    table = pd.DataFrame(rows, columns=list(RECON_EVAL_COLUMNS))
    summary = []
    for (roi, set_name, source, metric, layer), group in table.groupby(
        ["roi", "set", "source", "metric", "layer"], sort=False
    ):
        values = group["value"].to_numpy()
        low, high = bootstrap_ci(values, seed=config.random_seed)
        summary.append(
            {
                "roi": roi,
                "set": set_name,
                "source": source,
                "metric": metric,
                "layer": layer,
                "value": float(np.nanmean(values)),
                "ci_low": low,
                "ci_high": high,
                "p_value": above_chance_p(values) if metric.endswith("identification") else None,
                "n": int(np.isfinite(values).sum()),
            }
        )
    per_stimulus, per_set = recon_eval_paths(config.output_dir, label)
    write_table(per_stimulus, rows, RECON_EVAL_COLUMNS)
    write_table(per_set, summary, RECON_SUMMARY_COLUMNS)
    for row in summary:
        if row["metric"] == "pixel_identification":
            LOGGER.info(
                "sub-%s %s/%s (%s): pixel identification %.3f [%.3f, %.3f]",
                label,
                row["set"],
                row["source"],
                row["roi"],
                row["value"],
                row["ci_low"],
                row["ci_high"],
            )
