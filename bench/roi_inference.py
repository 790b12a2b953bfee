"""RoI inference versus the whole volume on a CT-sized scan (issue 5). Prints Markdown tables.

1. Builds a CT-sized volume: Testing/Data/ts_ct_full (122x101x112 voxels at 3 mm, TotalSegmentator's
   example CT) resampled (linear) to 512x512 in-plane at 0.715 mm and ``--slices-mm`` slices (int16, air outside).
2. Trains a small 3D U-Net (3 levels, base 4, batch norm) on that CT's liver for ``--steps`` steps (Adam), on
   patches at the network spacing ``--network-mm`` (the fine pass) and twice it (the coarse
   pass), half centred on liver voxels and half anywhere (so it learns the background), and saves it as a SegNets
   model whose card keeps the largest liver component (``postprocessing.keep_largest_component``, both modes).
3. Runs, each in its own fresh subprocess so peak memories do not mix, with the same weights:
   - "RoI": ``Predictor.predict(roi="auto")`` (coarse pass at 2x the spacing resampled straight from the input,
     liver box + 10 mm, only that box of the input resampled to the network grid, windows on the box);
   - "whole": ``Predictor.predict(roi="off")``: MONAI ``sliding_window_inference`` over the whole volume
     (same preprocessing, windows, Gaussian blending and resampling back).
   Wall time, peak RSS of the process during ``predict`` (VmHWM, reset just before the call through
   ``/proc/self/clear_refs``, so loading the model and volume does not count) and the RSS growth during the
   call (that peak minus the RSS just before ``predict``), conv3d MACs executed (counted by forward hooks),
   achieved conv throughput and its fraction of one large ``conv3d``.
4. Dice between the two liver masks (input grid, 512x512xN) and against the reference liver.

Usage: ``python bench/roi_inference.py [--size 512] [--slices-mm 3] [--network-mm 1.5] [--steps 200]``
(about 4 minutes on 2 free CPU cores; ``--network-mm 3 --steps 100`` for a quick look).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from SegNetsLib import nets  # noqa: E402
from SegNetsLib.imageio import read_volume, volume_to_sitk, write_volume  # noqa: E402
from SegNetsLib.metrics import dice  # noqa: E402
from SegNetsLib.models import LabelInfo, ModelCard, ChannelInfo, Normalization, RoiSettings, save
from SegNetsLib.models.card import Postprocessing  # noqa: E402
from SegNetsLib.preprocess import preprocess  # noqa: E402
from SegNetsLib.volume import Volume  # noqa: E402

DATA = ROOT / "Testing" / "Data" / "ts_ct_full"
LIVER = 5  # TotalSegmentator label value
CARD = ModelCard(
    id="bench-liver", name="bench liver", version="1.0.0", architecture="unet3d",
    in_channels=[ChannelInfo("CT", "CT")], labels=[LabelInfo(LIVER, "liver", (0.86, 0.55, 0.41))],
    build_args={"preset": "default", "base_channels": 4, "levels": 3, "norm": "batch"},
    target_spacing=(3.0, 3.0, 3.0), normalization=Normalization("ct_window", (-160.0, 240.0)),
    patch_size=(48, 96, 96), roi=RoiSettings(mode="auto", coarse_factor=2.0, extension="padding", padding_mm=10.0),
    postprocessing=Postprocessing(keep_largest_component=True),  # one liver: drop stray blobs in both modes
)


def ct_sized(volume: Volume, size: int, slice_mm: float, default: float, interpolator) -> Volume:
    """``volume`` resampled onto a size x size grid (isotropic in-plane, covering its widest side) with ``slice_mm`` slices."""
    image = volume_to_sitk(volume)
    extent = np.array(image.GetSize()) * np.array(image.GetSpacing())
    in_plane = max(extent[0], extent[1]) / size
    spacing = (in_plane, in_plane, slice_mm)
    shape = (size, size, int(round(extent[2] / slice_mm)))
    centre = image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()])
    direction = np.reshape(image.GetDirection(), (3, 3))
    origin = np.array(centre) - direction @ ((np.array(shape) - 1) / 2 * np.array(spacing))
    out = sitk.Resample(image, shape, sitk.Transform(), interpolator, tuple(origin), spacing, image.GetDirection(),
                        default, image.GetPixelID())
    return Volume(sitk.GetArrayFromImage(out), spacing, tuple(origin), direction)


def train(ct: Volume, label: Volume, card: ModelCard, steps: int, seed: int = 0) -> torch.nn.Module:
    """The bench network trained on liver patches at the card's spacing and twice it (two 32x64x64 patches per step)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    build = dict(card.build_args)
    net = nets.build("unet3d", 1, 2, build.pop("preset"), **build)
    scales = []
    for factor in (1.0, card.roi.coarse_factor):
        scaled = replace(card, target_spacing=tuple(s * factor for s in card.target_spacing))
        image = torch.from_numpy(preprocess(ct, scaled).network_input())
        mask = replace(scaled, normalization=Normalization("none"))
        liver = label.with_array((label.array == LIVER).astype(np.float32))
        target = torch.from_numpy((preprocess(liver, mask).grid.array[0] > 0.5).astype(np.int64))
        scales.append((image, target))
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    weights = torch.tensor([1.0, 3.0])
    net.train()
    for step in range(steps):
        image, target = scales[step % 2]
        patch = [min(p, s) for p, s in zip((32, 64, 64), target.shape)]
        crops = []
        for _ in range(2):
            # half of the patches centred on liver voxels, so the small liver is seen often enough
            if rng.random() < 0.5:
                centre = np.argwhere(target.numpy())[rng.integers(0, int(target.sum()))]
                start = [int(np.clip(c - p // 2, 0, s - p)) for c, p, s in zip(centre, patch, target.shape)]
            else:
                start = [int(rng.integers(0, s - p + 1)) for s, p in zip(target.shape, patch)]
            crops.append(tuple(slice(a, a + p) for a, p in zip(start, patch)))
        optimizer.zero_grad()
        logits = net(torch.stack([image[(slice(None), *c)] for c in crops])).logits
        loss = torch.nn.functional.cross_entropy(logits, torch.stack([target[c] for c in crops]), weight=weights)
        loss.backward()
        optimizer.step()
    return net.eval()


def peak_conv_gmacs() -> float:
    """GMAC/s of one large conv3d (2x32x64x64x64 input, 32 3x3x3 filters), the best of three runs."""
    x, w = torch.randn(2, 32, 64, 64, 64), torch.randn(32, 32, 3, 3, 3)
    macs = x.numel() * 32 * 27
    best = float("inf")
    with torch.inference_mode():
        torch.nn.functional.conv3d(x, w, padding=1)
        for _ in range(3):
            start = time.perf_counter()
            torch.nn.functional.conv3d(x, w, padding=1)
            best = min(best, time.perf_counter() - start)
    return macs / best / 1e9


def child(model: str, volume_path: str, roi: str, out_path: str) -> None:
    """One measured run in a fresh process: prints a JSON line with time, memory and MACs."""
    import psutil

    from SegNetsLib.inference import Predictor
    from SegNetsLib.models import load

    net, card = load(model)
    volume = read_volume(volume_path)
    macs = [0]

    def count(module, inputs, output):
        kernel = int(np.prod(module.kernel_size))
        if isinstance(module, torch.nn.ConvTranspose3d):
            macs[0] += inputs[0].numel() * module.out_channels * kernel // module.groups
        else:
            macs[0] += output.numel() * (module.in_channels // module.groups) * kernel

    for module in net.modules():
        if isinstance(module, (torch.nn.Conv3d, torch.nn.ConvTranspose3d)):
            module.register_forward_hook(count)
    predictor = Predictor(net, card, device="cpu")
    rss_before = psutil.Process().memory_info().rss
    Path("/proc/self/clear_refs").write_text("5")  # high-water mark := current RSS (Linux >= 4.0)
    start = time.perf_counter()
    prediction = predictor.predict(volume, roi=roi)
    seconds = time.perf_counter() - start
    peak = high_water_mark()
    np.save(out_path, prediction.labelmap.array == LIVER)
    print(json.dumps({"seconds": seconds, "peak": peak, "growth": peak - rss_before, "macs": macs[0],
                      "rois": [list(b) for b in prediction.rois]}))


def high_water_mark() -> int:
    """Peak RSS (bytes) of this process since the last reset of ``/proc/self/clear_refs``."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def run_child(model: Path, volume: Path, roi: str, out: Path) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--child", str(model), str(volume), roi, str(out)],
        capture_output=True, text=True, check=False,
    )
    if result.returncode:
        raise SystemExit(f"roi_inference: the {roi} run failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="in-plane size of the CT-sized volume")
    parser.add_argument("--slices-mm", type=float, default=3.0, help="slice spacing of the CT-sized volume")
    parser.add_argument("--network-mm", type=float, default=1.5, help="the model's target spacing (network grid)")
    parser.add_argument("--steps", type=int, default=200, help="training steps of the bench network")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    ct, label = read_volume(DATA / "image.nii.gz"), read_volume(DATA / "label.nii.gz")
    big = ct_sized(ct, args.size, args.slices_mm, -1024.0, sitk.sitkLinear)
    big_label = ct_sized(label, args.size, args.slices_mm, 0.0, sitk.sitkNearestNeighbor)
    card = replace(CARD, target_spacing=(args.network_mm,) * 3)
    start = time.perf_counter()
    net = train(ct, label, card, args.steps)
    train_seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        model = save(net, card, folder / "model")
        volume_path = write_volume(big, folder / "ct.nrrd")
        runs = {roi: run_child(model, volume_path, roi, folder / f"{roi}.npy") for roi in ("auto", "off")}
        masks = {roi: np.load(folder / f"{roi}.npy") for roi in runs}
    reference = big_label.array == LIVER
    peak = peak_conv_gmacs()
    roi, whole = runs["auto"], runs["off"]

    print(f"CT-sized volume: ts_ct_full resampled to {big.shape_kji[::-1]} voxels (x, y, z) at "
          f"{big.spacing[0]:.3f} x {big.spacing[1]:.3f} x {big.spacing[2]:.2f} mm; network grid {args.network_mm} mm, "
          f"patch {card.patch_size}, 3D U-Net base 4 / 3 levels trained {args.steps} steps ({train_seconds:.0f} s); "
          f"CPU threads {torch.get_num_threads()}, {os.cpu_count()} cores.\n")
    print("| run | wall time (s) | peak RSS during predict (MiB) | RSS growth in predict (MiB) | conv GMAC | conv GMAC/s | "
          "of peak conv3d | Dice vs reference liver |")
    print("|---|---|---|---|---|---|---|---|")
    for name, run, key in (("RoI (`roi=auto`)", roi, "auto"), ("whole volume (`roi=off`)", whole, "off")):
        rate = run["macs"] / run["seconds"] / 1e9
        print(f"| {name} | {run['seconds']:.1f} | {run['peak'] / 2**20:.0f} | {run['growth'] / 2**20:.0f} | "
              f"{run['macs'] / 1e9:.0f} | {rate:.1f} | {100 * rate / peak:.0f} % | {dice(masks[key], reference):.3f} |")
    print(f"\nOne large conv3d reaches {peak:.1f} GMAC/s on this machine. RoI boxes (input voxels): {roi['rois']}\n")
    print("| measure | RoI / whole | target | met |")
    print("|---|---|---|---|")
    speedup = whole["seconds"] / roi["seconds"]
    memory = roi["growth"] / whole["growth"]
    total = roi["peak"] / whole["peak"]
    agreement = dice(masks["auto"], masks["off"])
    inside = np.zeros(reference.shape, bool)
    for z0, y0, x0, z1, y1, x1 in roi["rois"]:
        inside[z0:z1, y0:y1, x0:x1] = True
    agreement_inside = dice(masks["auto"] & inside, masks["off"] & inside)
    print(f"| speed-up | {speedup:.2f}x | >= 3x | {'yes' if speedup >= 3 else 'no'} |")
    print(f"| memory growth in predict | {memory:.2f} | <= 0.5 | {'yes' if memory <= 0.5 else 'no'} |")
    print(f"| peak RSS during predict (process) | {total:.2f} | (<= 0.5) | {'yes' if total <= 0.5 else 'no'} |")
    print(f"| Dice agreement on the liver | {agreement:.4f} | >= 0.98 | {'yes' if agreement >= 0.98 else 'no'} |")
    print(f"| Dice agreement inside the RoIs | {agreement_inside:.4f} | | |")
    outside = masks["off"] & ~inside
    print(f"\nLiver voxels of the whole-volume run outside the RoIs: {int(outside.sum())} "
          f"({int((outside & reference).sum())} of them in the reference liver); reference liver voxels outside the "
          f"RoIs: {int((reference & ~inside).sum())} of {int(reference.sum())}.")


if __name__ == "__main__":
    main()
