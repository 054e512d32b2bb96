"""Parity with the Kamitani lab's reference code (bdpy): VGG19 features, generator images, L-BFGS.

The reference side runs bdpy's own ``VGG19`` and ``AlexNetGenerator`` modules (bdpy needs
numpy<2 and Python < 3.12, so it runs in its own virtual environment, made here on first use)
with fixed pseudo-random weights, saves those weights as the lab distributes them
(``torch.save(module.state_dict())``), and runs images through them with the reference
preprocessing of brain-decoding-cookbook's feature extraction (RGB, bicubic resize to 224,
BGR, minus the mean pixel). It also runs a few iterations of the reference L-BFGS path
(``scipy.optimize.minimize(method="L-BFGS-B")`` on pixels within bounds, as KamitaniLab/icnn).

bids_recon then loads the weights files written by bdpy and is compared layer by layer with the
reference outputs: max |difference| / max |reference| for every layer (targets: 1e-4).

    python bench/parity_bdpy.py                    # make or reuse the venv, run both, compare
    python bench/parity_bdpy.py --write-expected   # also refresh tests/data/parity_bdpy
    python bench/parity_bdpy.py --bdpy-python PY   # use an interpreter that has bdpy
    python bench/parity_bdpy.py --committed --device cuda   # no bdpy: against the committed
                                                            # outputs, e.g. on a GPU machine

The weights are a pure function of the state-dict keys and shapes (:func:`lab_state_dict`), so
``tests/test_parity_bdpy.py`` rebuilds the same files without bdpy and checks bids_recon against
the committed reference outputs (``tests/data/parity_bdpy``).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
EXPECTED = HERE.parent / "tests" / "data" / "parity_bdpy"
VENV = HERE / ".venv-bdpy"
BDPY_REQUIREMENTS = ["bdpy==0.26", "numpy<2", "scipy", "pillow", "torch", "torchvision"]
VGG19_FILE = "VGG_ILSVRC_19_layers.pt"
GENERATOR_FILE = "generator_relu7.pt"
# The mean pixel (BGR) used on both sides: the ImageNet mean of the paper's scripts.
MEAN_BGR = (104.007, 116.669, 122.679)
LAYERS = [
    "conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv3_4",
    "conv4_1", "conv4_2", "conv4_3", "conv4_4", "conv5_1", "conv5_2", "conv5_3", "conv5_4",
    "fc6", "fc7", "fc8",
]  # fmt: skip
FULL_LAYERS = ("fc6", "fc7", "fc8")  # stored whole; the others as statistics and samples
SAMPLES = 512  # unit values kept per image of the other layers
LBFGS_LAYERS = ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1", "fc7"]
LBFGS_SIZE, LBFGS_ITERATIONS = 64, 20
TARGET = 1e-4


# Shared by both sides ---------------------------------------------------------------------


def fill(shape: tuple[int, ...], name: str) -> np.ndarray:
    """Deterministic weights for one tensor: He-uniform for weights, ±0.1 for biases.

    Drawn from NumPy's legacy ``RandomState`` (its streams are frozen across NumPy versions)
    seeded by the CRC32 of the parameter name, in chunks of 2**24 values.
    """
    rng = np.random.RandomState(zlib.crc32(name.encode()))
    bound = math.sqrt(6.0 / math.prod(shape[1:])) if name.endswith("weight") else 0.1
    count, out = math.prod(shape), []
    for start in range(0, count, 1 << 24):
        out.append(rng.uniform(-bound, bound, min(1 << 24, count - start)).astype(np.float32))
    return np.concatenate(out).reshape(shape)


def lab_state_dict(keys: dict[str, dict]) -> dict[str, torch.Tensor]:
    """A state dict with the given keys (``{key: {"shape": ..., "canonical": ...}}``).

    Keys sharing a canonical name (bdpy registers the generator's layers twice) share one
    tensor, as in bdpy's own state dicts.
    """
    tensors: dict[str, torch.Tensor] = {}
    for info in keys.values():
        name = info["canonical"]
        if name not in tensors:
            tensors[name] = torch.from_numpy(fill(tuple(info["shape"]), name))
    return {key: tensors[info["canonical"]] for key, info in keys.items()}


def reference_input(path: Path, size: int = 224) -> np.ndarray:
    """The reference preprocessing: RGB, bicubic resize, BGR, minus the mean pixel (3, H, W)."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB").resize((size, size), Image.BICUBIC))
    bgr = np.transpose(rgb, (2, 0, 1))[::-1]
    return np.ascontiguousarray(np.float32(bgr) - np.reshape(MEAN_BGR, (3, 1, 1)).astype("f4"))


def sample_index(units: int, seed: int) -> np.ndarray:
    """Fixed unit indices of a layer whose values are stored."""
    return np.sort(np.random.RandomState(seed).choice(units, min(SAMPLES, units), replace=False))


def summarize(features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What is stored of each layer: full arrays, or statistics and sampled values."""
    out = {}
    for k, (layer, values) in enumerate(features.items()):
        flat = values.reshape(len(values), -1).astype(np.float32)
        if layer in FULL_LAYERS:
            out[f"{layer}/full"] = flat
        else:
            out[f"{layer}/samples"] = flat[:, sample_index(flat.shape[1], k)]
        out[f"{layer}/stats"] = np.array(
            [flat.mean(), flat.std(), np.abs(flat).max()], dtype=np.float64
        )
    return out


def generator_latents() -> np.ndarray:
    """Two non-negative fc7-like latents."""
    return np.random.RandomState(1).uniform(0, 3, (2, 4096)).astype(np.float32)


# Reference side (runs in the bdpy environment) ------------------------------------------------


def run_reference(out: Path, images: list[Path]) -> None:
    """Write the lab-format weights and bdpy's outputs to ``out``."""
    import scipy.optimize
    from bdpy.dl.torch import FeatureExtractor
    from bdpy.dl.torch.models import VGG19, AlexNetGenerator, layer_map

    torch.set_num_threads(2)
    results: dict[str, np.ndarray] = {}
    key_lists = {}
    for tag, module, file in (
        ("vgg19", VGG19(), VGG19_FILE),
        ("generator", AlexNetGenerator(), GENERATOR_FILE),
    ):
        named = {id(p): n for n, p in module.named_parameters()}
        keys = {
            key: {"shape": list(value.shape), "canonical": named[id(value)]}
            for key, value in module.state_dict(keep_vars=True).items()
        }
        module.load_state_dict(lab_state_dict(keys))
        module.eval()
        torch.save(module.state_dict(), out / file)
        key_lists[tag] = keys
    (out / "keys.json").write_text(json.dumps(key_lists, indent=1))

    vgg = VGG19()
    vgg.load_state_dict(torch.load(out / VGG19_FILE))
    vgg.eval()
    extractor = FeatureExtractor(vgg, LAYERS, layer_map("vgg19"), device="cpu", detach=True)
    x = np.stack([reference_input(path) for path in images])
    with torch.no_grad():
        features = extractor.run(torch.from_numpy(x))
    results.update(summarize({layer: features[layer] for layer in LAYERS}))
    del extractor

    generator = AlexNetGenerator()
    generator.load_state_dict(torch.load(out / GENERATOR_FILE))
    generator.eval()
    with torch.no_grad():
        generated = generator(torch.from_numpy(generator_latents())).numpy()
    results["generator/image"] = generated[:, :, ::4, ::4]
    top = (generated.shape[-1] - 224) // 2  # the reference crop of icnn's reconstruct()
    results["generator/crop224"] = generated[:, :, top : top + 224, top : top + 224][..., ::4, ::4]
    results["generator/stats"] = np.array([np.abs(generated).max()], dtype=np.float64)

    # L-BFGS-B on pixels, scipy as the reference path; loss as the paper's (layer weights
    # 1/|target|^2, normalized), image features of the first image at 64 x 64 as targets.
    taps = {layer: layer_map("vgg19")[layer] for layer in LBFGS_LAYERS}
    extractor = FeatureExtractor(vgg, LBFGS_LAYERS, taps, device="cpu", detach=False)
    target_x = torch.from_numpy(reference_input(images[0], LBFGS_SIZE)[None])
    with torch.no_grad():
        targets = {k: v.detach().clone() for k, v in extractor.run(target_x).items()}
    norms = {k: float(v.pow(2).sum()) for k, v in targets.items()}
    total = sum(1 / n for n in norms.values())
    weights = {k: (1 / n) / total for k, n in norms.items()}
    shape = (1, 3, LBFGS_SIZE, LBFGS_SIZE)
    curve: list[float] = []

    def loss_and_grad(flat: np.ndarray) -> tuple[float, np.ndarray]:
        x = torch.from_numpy(flat.astype(np.float32).reshape(shape)).requires_grad_(True)
        feats = extractor.run(x)
        loss = sum(weights[k] * (feats[k] - targets[k]).pow(2).sum() for k in LBFGS_LAYERS)
        loss.backward()
        curve.append(float(loss))
        return float(loss), x.grad.numpy().astype(np.float64).ravel()

    lower = np.broadcast_to(-np.reshape(MEAN_BGR, (3, 1, 1)), shape[1:]).ravel()
    upper = lower + 255.0
    result = scipy.optimize.minimize(
        loss_and_grad,
        np.zeros(math.prod(shape)),
        jac=True,
        method="L-BFGS-B",
        bounds=list(zip(lower, upper, strict=True)),
        options={"maxiter": LBFGS_ITERATIONS},
    )
    results["lbfgs/image"] = result.x.reshape(shape).astype(np.float32)
    results["lbfgs/loss"] = np.array([result.fun, result.nit, len(curve)], dtype=np.float64)
    np.savez_compressed(out / "reference.npz", **results)


# bids_recon side -------------------------------------------------------------------------------


def relative_error(ours: np.ndarray, reference: np.ndarray, scale: float) -> float:
    """max |ours - reference| / max |reference| (``scale``: the reference's max |value|)."""
    return float(np.abs(np.asarray(ours, np.float64) - reference).max() / max(scale, 1e-30))


def compare(
    expected: Path, vgg19_file: Path, generator_file: Path, device: str = "cpu"
) -> dict[str, float]:
    """Relative errors of bids_recon against the reference outputs, per layer and output."""
    from bids_recon.features.extract import extract_features
    from bids_recon.features.networks import build_network
    from bids_recon.features.preprocess import Preprocessing
    from bids_recon.recon.generator import load_generator, to_network_input
    from bids_recon.runtime import resolve_device

    device = resolve_device(device)  # as the app: full float32 on CUDA
    reference = np.load(expected / "reference.npz")
    images = sorted((expected / "images").glob("*.png"))
    network = build_network("vgg19", vgg19_file, LAYERS, preprocessing="caffe")
    ours = extract_features(network, images, len(images), device)
    errors = {}
    for k, layer in enumerate(LAYERS):
        scale = float(reference[f"{layer}/stats"][2])
        if layer in FULL_LAYERS:
            values = ours[layer]
            errors[layer] = relative_error(values, reference[f"{layer}/full"], scale)
        else:
            values = ours[layer][:, sample_index(ours[layer].shape[1], k)]
            errors[layer] = relative_error(values, reference[f"{layer}/samples"], scale)
        errors[f"{layer} max|x|"] = relative_error(np.abs(ours[layer]).max(), scale, scale)
    generator = load_generator(generator_file).to(device)
    with torch.no_grad():
        generated = generator(torch.from_numpy(generator_latents()).to(device))
        cropped = to_network_input(generated, Preprocessing("caffe", 224)).cpu().numpy()
    scale = float(reference["generator/stats"][0])
    image = generated.cpu().numpy()[:, :, ::4, ::4]
    errors["generator image"] = relative_error(image, reference["generator/image"], scale)
    errors["generator crop 224"] = relative_error(
        cropped[..., ::4, ::4], reference["generator/crop224"], scale
    )
    return errors


def compare_lbfgs(expected: Path, vgg19_file: Path, device: str = "cpu") -> dict[str, float]:
    """bids_recon's L-BFGS against the reference's scipy L-BFGS-B on the same problem."""
    from bids_recon.features.networks import build_network
    from bids_recon.recon.loss import feature_loss, layer_weights
    from bids_recon.recon.optimize import lbfgs

    reference = np.load(expected / "reference.npz")
    image = sorted((expected / "images").glob("*.png"))[0]
    network = build_network("vgg19", vgg19_file, LBFGS_LAYERS, preprocessing="caffe").to(device)
    x_target = torch.from_numpy(reference_input(image, LBFGS_SIZE)[None]).to(device)
    with torch.no_grad():
        targets = {k: v.detach().clone() for k, v in network(x_target).items()}
    weights = layer_weights(targets)
    lower = -torch.tensor(MEAN_BGR, dtype=torch.float32, device=device).reshape(3, 1, 1)
    upper = lower + 255.0
    x, trace = lbfgs(
        lambda v, rows: feature_loss(network(v), targets, weights),  # one image: rows is None
        torch.zeros(1, 3, LBFGS_SIZE, LBFGS_SIZE, device=device),
        LBFGS_ITERATIONS,
        lower,
        upper,
    )
    ref_image = reference["lbfgs/image"].ravel()
    ref_loss, ref_iterations, ref_evaluations = reference["lbfgs/loss"]
    return {
        "iterations": LBFGS_ITERATIONS,
        "reference loss": float(ref_loss),
        "reference iterations": float(ref_iterations),
        "reference evaluations": float(ref_evaluations),
        "bids_recon loss": float(trace.curves[0][-1]),
        "bids_recon iterations": float(len(trace.curves[0]) - 1),
        "bids_recon evaluations": float(trace.passes[0]),
        "pixel correlation": float(np.corrcoef(x.cpu().numpy().ravel(), ref_image)[0, 1]),
        "start loss": float(trace.curves[0][0]),
    }


def write_lab_weights(folder: Path, expected: Path = EXPECTED) -> tuple[Path, Path]:
    """The weights files of the reference run, rebuilt from the committed key lists."""
    keys = json.loads((expected / "keys.json").read_text())
    paths = folder / VGG19_FILE, folder / GENERATOR_FILE
    for tag, path in zip(("vgg19", "generator"), paths, strict=True):
        torch.save(lab_state_dict(keys[tag]), path)
    return paths


def make_images(folder: Path) -> list[Path]:
    """Three small test images of different sizes and modes (committed with the reference)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(7)
    shapes = {"a_rgb": (90, 120, 3), "b_gray": (64, 64), "c_tall": (150, 100, 3)}
    paths = []
    for name, shape in shapes.items():
        smooth = rng.uniform(0, 255, shape)
        for axis in (0, 1):
            smooth = (smooth + np.roll(smooth, 1, axis) + np.roll(smooth, -1, axis)) / 3
        path = folder / f"{name}.png"
        Image.fromarray(smooth.astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def bdpy_python(given: str | None) -> str:
    """An interpreter with bdpy: ``given``, or this folder's venv (made on first use)."""
    if given:
        return given
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", *BDPY_REQUIREMENTS], check=True)
    return str(python)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--bdpy-python", help="Python interpreter that has bdpy installed")
    parser.add_argument(
        "--write-expected", action="store_true", help=f"refresh {EXPECTED.relative_to(HERE.parent)}"
    )
    parser.add_argument(
        "--committed",
        action="store_true",
        help="compare against the committed reference outputs (no bdpy needed)",
    )
    parser.add_argument("--device", default="cpu", help="where bids_recon runs (cpu, cuda)")
    args = parser.parse_args()
    if args.reference is not None:  # inside the bdpy environment
        run_reference(args.reference, sorted((args.reference / "images").glob("*.png")))
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        if args.committed:
            expected = EXPECTED
            vgg19, generator = write_lab_weights(out)
        else:
            expected = out
            make_images(out / "images")
            subprocess.run(
                [bdpy_python(args.bdpy_python), __file__, "--reference", str(out)], check=True
            )
            vgg19, generator = out / VGG19_FILE, out / GENERATOR_FILE
        errors = compare(expected, vgg19, generator, args.device)
        lbfgs_report = compare_lbfgs(expected, vgg19, args.device)
        if args.write_expected and not args.committed:
            shutil.rmtree(EXPECTED, ignore_errors=True)
            EXPECTED.mkdir(parents=True)
            shutil.copytree(out / "images", EXPECTED / "images")
            for name in ("reference.npz", "keys.json"):
                shutil.copy(out / name, EXPECTED / name)
    print("| output | max abs diff / max abs reference | target |")
    print("|---|---|---|")
    for name, value in errors.items():
        print(f"| {name} | {value:.2e} | {'ok' if value <= TARGET else 'FAIL'} (<= {TARGET}) |")
    print()
    print("L-BFGS, bids_recon vs scipy L-BFGS-B (reference path), same start and bounds:")
    for name, value in lbfgs_report.items():
        print(f"  {name}: {value:.6g}")


if __name__ == "__main__":
    main()
