"""RoI inference versus the whole volume on a CT-sized scan. Prints Markdown tables.

1. Builds a CT-sized volume: Testing/Data/ts_ct_full (122x101x112 voxels at 3 mm, TotalSegmentator's
   example CT) resampled (linear) to 512x512 in-plane at 0.715 mm and ``--slices-mm`` slices (int16, air outside).
2. Trains a small 3D U-Net (3 levels, base 4, batch norm) on that CT's liver for ``--steps`` steps (Adam), on
   patches at the network spacing ``--network-mm`` (the fine pass) and twice it (the coarse
   pass), half centred on liver voxels and half anywhere (so it learns the background), and saves it as a SegNets
   model whose card keeps the largest liver component (``postprocessing.keep_largest_component``, both modes).
3. Runs, each in its own fresh subprocess so peak memories do not mix, with the same weights, ``--repeats``
   times per mode, alternating (the tables show the medians):
   - "RoI": ``Predictor.predict(roi="auto")`` (coarse pass at 2x the spacing resampled straight from the input,
     liver box + 10 mm, only that box of the input resampled to the network grid, windows on the box);
   - "whole": ``Predictor.predict(roi="off")``: MONAI ``sliding_window_inference`` over the whole volume
     (same preprocessing, windows, Gaussian blending and resampling back).
   Wall time, peak RSS of the process during ``predict`` (VmHWM, reset just before the call through
   ``/proc/self/clear_refs``, so loading the model and volume does not count) and the RSS growth during the
   call (that peak minus the RSS just before ``predict``), conv MACs executed (counted by :class:`ConvMacCounter`),
   achieved conv throughput and its fraction of one large ``conv3d``.
4. Dice between the two liver masks (input grid, 512x512xN) and against the reference liver.

Each run's process calls ``predict`` twice and measures both calls: *cold* (the first call in the process,
oneDNN's or cuDNN's one-time set-up included) and *warm* (the same Predictor again, as Slicer keeps it between
Segment clicks). On CUDA (``--device cuda``) the network trains there and the peak GPU memory allocated during
``predict`` is the memory measure.

Usage: ``python bench/roi_inference.py [--size 512] [--slices-mm 3] [--network-mm 1.5] [--steps 1000] [--repeats 3]
[--device cpu|cuda] [--save-model DIR | --model DIR]`` (15 to 25 minutes on 2 free CPU cores, 8 to 15 of them
training; ``--network-mm 3 --steps 100 --repeats 1`` for a quick look; ``--model`` measures a network trained earlier, e.g. on a GPU).
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
from torch.overrides import TorchFunctionMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from SegNetsLib import nets  # noqa: E402
from SegNetsLib.card.card import (
    ChannelInfo,
    LabelInfo,
    ModelCard,
    Normalization,
    Postprocessing,  # noqa: E402
    RoiSettings,
)
from SegNetsLib.core.volume import Volume  # noqa: E402
from SegNetsLib.evaluation.metrics import dice  # noqa: E402
from SegNetsLib.imageio.volumes import read_volume, volume_to_sitk, write_volume  # noqa: E402
from SegNetsLib.inference.preprocess import preprocess  # noqa: E402
from SegNetsLib.models.store import save  # noqa: E402
from SegNetsLib.runtime.devices import synchronize  # noqa: E402

DATA = ROOT / "Testing" / "Data" / "ts_ct_full"
LIVER = 5  # TotalSegmentator label value
CARD = ModelCard(
    id="bench-liver",
    name="bench liver",
    version="1.0.0",
    architecture="unet3d",
    in_channels=[ChannelInfo("CT", "CT")],
    labels=[LabelInfo(LIVER, "liver", (0.86, 0.55, 0.41))],
    build_args={"preset": "default", "base_channels": 4, "levels": 3, "norm": "batch"},
    target_spacing=(3.0, 3.0, 3.0),
    normalization=Normalization("ct_window", (-160.0, 240.0)),
    patch_size=(48, 96, 96),
    roi=RoiSettings(mode="auto", coarse_factor=2.0, extension="padding", padding_mm=10.0),
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
    out = sitk.Resample(
        image,
        shape,
        sitk.Transform(),
        interpolator,
        tuple(origin),
        spacing,
        image.GetDirection(),
        default,
        image.GetPixelID(),
    )
    return Volume(sitk.GetArrayFromImage(out), spacing, tuple(origin), direction)


def train(
    ct: Volume, label: Volume, card: ModelCard, steps: int, device: torch.device, seed: int = 0
) -> torch.nn.Module:
    """The bench network trained on liver patches at the card's spacing and twice it (two 32x64x64 patches per step)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    build = dict(card.build_args)
    net = nets.build("unet3d", 1, 2, build.pop("preset"), **build).to(device)
    scales = []
    for factor in (1.0, card.roi.coarse_factor):
        scaled = replace(card, target_spacing=tuple(s * factor for s in card.target_spacing))
        image = torch.from_numpy(preprocess(ct, scaled).network_input())
        mask = replace(scaled, normalization=Normalization("none"))
        liver = label.with_array((label.array == LIVER).astype(np.float32))
        target = torch.from_numpy((preprocess(liver, mask).grid.array[0] > 0.5).astype(np.int64))
        scales.append((image, target))
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    weights = torch.tensor([1.0, 3.0], device=device)
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
        logits = net(torch.stack([image[(slice(None), *c)] for c in crops]).to(device)).logits
        labels = torch.stack([target[c] for c in crops]).to(device)
        loss = torch.nn.functional.cross_entropy(logits, labels, weight=weights)
        loss.backward()
        optimizer.step()
    return net.cpu().eval()


def peak_conv_gmacs(device: torch.device) -> float:
    """GMAC/s of one large conv3d (2x32x64x64x64 input, 32 3x3x3 filters), the best of three runs; on CUDA in
    float16 and channels-last-3d, as the Predictor runs its windows there."""
    on_gpu = device.type == "cuda"
    dtype, layout = (torch.float16, torch.channels_last_3d) if on_gpu else (torch.float32, torch.contiguous_format)
    x = torch.randn(2, 32, 64, 64, 64, device=device, dtype=dtype).contiguous(memory_format=layout)
    w = torch.randn(32, 32, 3, 3, 3, device=device, dtype=dtype).contiguous(memory_format=layout)
    macs = x.numel() * 32 * 27
    best = float("inf")
    with torch.inference_mode():
        for run in range(4):  # the first run warms up (cuDNN picks its algorithm)
            synchronize(device)
            start = time.perf_counter()
            torch.nn.functional.conv3d(x, w, padding=1)
            synchronize(device)
            if run:
                best = min(best, time.perf_counter() - start)
    return macs / best / 1e9


class ConvMacCounter(TorchFunctionMode):
    """Counts the multiply-accumulates of every 3D convolution run inside it: ``F.conv3d``, oneDNN's
    ``torch.mkldnn_convolution`` (what :mod:`SegNetsLib.runtime.cpu_conv` turns CPU conv3d calls into) and
    ``F.conv_transpose3d``, including convolutions that networks call directly rather than through a module."""

    def __init__(self) -> None:
        super().__init__()
        self.macs = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        transposed = func is torch.nn.functional.conv_transpose3d
        if transposed or func in (torch.nn.functional.conv3d, torch.mkldnn_convolution):
            weight = args[1] if len(args) > 1 else kwargs["weight"]
            # per output voxel C_in/groups x kernel; transposed: per input voxel C_out/groups x kernel
            self.macs += (args[0] if transposed else out).numel() * weight[0].numel()
        return out


def child(model: str, volume_path: str, roi: str, out_path: str, device: str) -> None:
    """Two measured calls in a fresh process, cold (the first: oneDNN / cuDNN set-up included) and warm (the
    model kept, as in Slicer after the first Segment): prints a JSON line with time, memory and MACs of each."""
    from SegNetsLib.inference.predictor import Predictor
    from SegNetsLib.models.library import load

    net, card = load(model)
    volume = read_volume(volume_path)
    predictor = Predictor(net, card, device=device)
    calls = {}
    for call in ("cold", "warm"):  # the first call in a fresh process, then the same model again (kept warm)
        with ConvMacCounter() as counter:
            calls[call], prediction = measured_predict(predictor, volume, roi)
        calls[call]["macs"] = counter.macs
    np.save(out_path, prediction.labelmap.array == LIVER)
    print(json.dumps({**calls, "rois": [list(b) for b in prediction.rois]}))


def measured_predict(predictor, volume: Volume, roi: str) -> tuple[dict, object]:
    """One ``predict`` call: wall seconds, peak RSS and its growth over the RSS before the call (bytes), and on
    CUDA the peak GPU memory allocated during the call."""
    import psutil

    on_gpu = predictor.device.type == "cuda"
    synchronize(predictor.device)
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    rss_before = psutil.Process().memory_info().rss
    Path("/proc/self/clear_refs").write_text("5")  # high-water mark := current RSS (Linux >= 4.0)
    start = time.perf_counter()
    prediction = predictor.predict(volume, roi=roi)
    synchronize(predictor.device)
    seconds = time.perf_counter() - start
    peak = high_water_mark()
    gpu_peak = torch.cuda.max_memory_allocated() if on_gpu else 0
    return {"seconds": seconds, "peak": peak, "growth": peak - rss_before, "gpu_peak": gpu_peak}, prediction


def high_water_mark() -> int:
    """Peak RSS (bytes) of this process since the last reset of ``/proc/self/clear_refs``."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def run_child(model: Path, volume: Path, roi: str, out: Path, device: str) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--child", str(model), str(volume), roi, str(out), device],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode:
        raise SystemExit(f"roi_inference: the {roi} run failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def median_run(results: list[dict]) -> dict:
    """Per call (cold, warm) the median of each measure over repeated child runs; RoI boxes of the first."""
    return {
        **{
            call: {key: float(np.median([r[call][key] for r in results])) for key in results[0][call]}
            for call in ("cold", "warm")
        },
        "rois": results[0]["rois"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="in-plane size of the CT-sized volume")
    parser.add_argument("--slices-mm", type=float, default=3.0, help="slice spacing of the CT-sized volume")
    parser.add_argument("--network-mm", type=float, default=1.5, help="the model's target spacing (network grid)")
    parser.add_argument("--steps", type=int, default=1000, help="training steps of the bench network")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per mode; tables show the medians")
    parser.add_argument("--device", default="cpu", help="where to train and predict: cpu, cuda, cuda:N")
    parser.add_argument("--model", help="a bench model folder saved by --save-model: measure it instead of training")
    parser.add_argument("--save-model", help="keep the trained bench model in this folder (it must not exist)")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    from SegNetsLib.models.library import load
    from SegNetsLib.runtime.devices import resolve_device

    device = resolve_device(args.device)
    ct, label = read_volume(DATA / "image.nii.gz"), read_volume(DATA / "label.nii.gz")
    big = ct_sized(ct, args.size, args.slices_mm, -1024.0, sitk.sitkLinear)
    big_label = ct_sized(label, args.size, args.slices_mm, 0.0, sitk.sitkNearestNeighbor)
    start = time.perf_counter()
    if args.model:
        net, card = load(args.model)
        trained = f"loaded from {args.model}"
    else:
        card = replace(CARD, target_spacing=(args.network_mm,) * 3)
        net = train(ct, label, card, args.steps, device)
        trained = f"trained {args.steps} steps on {device} ({time.perf_counter() - start:.0f} s)"
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        model = Path(args.model) if args.model else save(net, card, Path(args.save_model or folder / "model"))
        volume_path = write_volume(big, folder / "ct.nrrd")
        repeats = {"auto": [], "off": []}
        for _ in range(args.repeats):  # alternating, so both modes see the same load on a shared machine
            for mode, results in repeats.items():
                results.append(run_child(model, volume_path, mode, folder / f"{mode}.npy", str(device)))
        runs = {mode: median_run(results) for mode, results in repeats.items()}
        masks = {mode: np.load(folder / f"{mode}.npy") for mode in runs}
    reference = big_label.array == LIVER
    peak = peak_conv_gmacs(device)
    roi, whole = runs["auto"], runs["off"]
    on_gpu = device.type == "cuda"
    where = (
        f"{torch.cuda.get_device_name(device)}, float16 autocast"
        if on_gpu
        else f"CPU threads {torch.get_num_threads()}, {os.cpu_count()} cores"
    )

    print(
        f"CT-sized volume: ts_ct_full resampled to {big.shape_kji[::-1]} voxels (x, y, z) at "
        f"{big.spacing[0]:.3f} x {big.spacing[1]:.3f} x {big.spacing[2]:.2f} mm; network grid "
        f"{card.target_spacing[0]} mm, patch {card.patch_size}, 3D U-Net base 4 / 3 levels {trained}; {where}.\n"
    )
    gpu_columns = " peak GPU memory in predict (MiB) |" if on_gpu else ""
    print(
        "| run | call | wall time (s) | peak RSS during predict (MiB) | RSS growth in predict (MiB) |"
        + gpu_columns
        + " conv GMAC | conv GMAC/s | of peak conv3d | Dice vs reference liver |"
    )
    print("|---|---|---|---|---|" + ("---|" if on_gpu else "") + "---|---|---|---|")
    for name, run, key in (("RoI (`roi=auto`)", roi, "auto"), ("whole volume (`roi=off`)", whole, "off")):
        for call in ("cold", "warm"):
            measured = run[call]
            rate = measured["macs"] / measured["seconds"] / 1e9
            gpu_cell = f" {measured['gpu_peak'] / 2**20:.0f} |" if on_gpu else ""
            share = 100 * rate / peak  # a GPU's calls reach well under 1 % of its best conv3d
            print(
                f"| {name} | {call} | {measured['seconds']:.2f} | {measured['peak'] / 2**20:.0f} | "
                f"{measured['growth'] / 2**20:.0f} |{gpu_cell} {measured['macs'] / 1e9:.0f} | {rate:.1f} | "
                f"{share:.{0 if share >= 1 else 2}f} % | {dice(masks[key], reference):.3f} |"
            )
    print(f"\nOne large conv3d reaches {peak:.1f} GMAC/s on {device}. RoI boxes (input voxels): {roi['rois']}\n")
    print("| measure | call | RoI / whole | target | met |")
    print("|---|---|---|---|---|")
    memories = [("peak GPU memory in predict", "gpu_peak")] if on_gpu else []
    memories += [("RSS growth in predict", "growth"), ("peak RSS during predict (process)", "peak")]
    for call in ("cold", "warm"):
        speedup = whole[call]["seconds"] / roi[call]["seconds"]
        print(f"| speed-up | {call} | {speedup:.2f}x | >= 3x | {'yes' if speedup >= 3 else 'no'} |")
        for index, (name, key) in enumerate(memories):
            ratio = roi[call][key] / whole[call][key]
            target = "<= 0.5" if index == 0 else "(<= 0.5)"
            print(f"| {name} | {call} | {ratio:.2f} | {target} | {'yes' if ratio <= 0.5 else 'no'} |")
    agreement = dice(masks["auto"], masks["off"])
    inside = np.zeros(reference.shape, bool)
    for z0, y0, x0, z1, y1, x1 in roi["rois"]:
        inside[z0:z1, y0:y1, x0:x1] = True
    agreement_inside = dice(masks["auto"] & inside, masks["off"] & inside)
    print(
        f"| Dice agreement on the liver | both | {agreement:.4f} | >= 0.98 | {'yes' if agreement >= 0.98 else 'no'} |"
    )
    print(f"| Dice agreement inside the RoIs | both | {agreement_inside:.4f} | | |")
    outside = masks["off"] & ~inside
    print(
        f"\nLiver voxels of the whole-volume run outside the RoIs: {int(outside.sum())} "
        f"({int((outside & reference).sum())} of them in the reference liver); reference liver voxels outside the "
        f"RoIs: {int((reference & ~inside).sum())} of {int(reference.sum())}."
    )


if __name__ == "__main__":
    main()
