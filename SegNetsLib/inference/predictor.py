"""The inference engine: a warm network that turns a volume into a labelmap in the volume's own geometry.

Pipeline of :meth:`Predictor.predict`: preprocess (card spacing/orientation/normalization) ->
RoI localization (coarse pass + connectivity, :mod:`SegNetsLib.inference.locate`; the coarse pass is this
network's or a locator model's, :mod:`SegNetsLib.inference.locator_model`) -> fine pass per RoI
with MONAI's ``sliding_window_inference`` (Gaussian blending) -> paste back -> argmax or threshold
-> card post-processing -> resampling onto the input's grid.

On CUDA: float16 autocast, channels-last-3d and ``torch.inference_mode``; running out of GPU memory
steps down (smaller window batch, output on the CPU, then the CPU for everything) and logs it. On the
CPU every 3D convolution runs oneDNN (:mod:`SegNetsLib.runtime.cpu_conv`).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from torch import nn

from SegNetsLib.card.card import ModelCard
from SegNetsLib.core.box import Box
from SegNetsLib.core.constants import ROI_CHOICES
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.core.progress import CancelToken, ProgressFn, no_progress
from SegNetsLib.core.volume import Volume
from SegNetsLib.inference.locate import LOCATORS, boxes_from_labelmap, boxes_from_masks, foreground_masks
from SegNetsLib.inference.locator_model import load_locator, locator_files
from SegNetsLib.inference.postprocess import postprocess
from SegNetsLib.inference.preprocess import Preprocessed, preprocess
from SegNetsLib.inference.source_grid import labelmap_on_source, probabilities_on_source
from SegNetsLib.nets.runet import RUNet
from SegNetsLib.runtime.cpu_conv import fast_cpu_convolutions
from SegNetsLib.runtime.devices import resolve_device

log = logging.getLogger(__name__)

OVERLAP = 0.25  # sliding-window overlap (fraction of the window)
CUDA_WINDOW_BATCH = 4  # windows per forward on a GPU
# Small windows go two at a time (fewer, larger oneDNN calls), large ones one at a time (half the
# activation memory).
SMALL_WINDOW_VOXELS = 64**3
LABEL_SLAB = 16  # slices per argmax chunk (bounds the int64 index array)


@dataclass
class Prediction:
    """labelmap: uint8 [k, j, i] in the input's geometry (values = card label values, 0 = background);
    probabilities: float32 [C, k, j, i] in the input's geometry (softmax or sigmoid) when asked for;
    rois: the boxes segmented, in input voxel indices (array order); empty when the whole volume was."""

    labelmap: Volume
    probabilities: Volume | None
    rois: list[Box]


@dataclass(frozen=True)
class _WindowPlan:
    """Where sliding windows run: windows per forward, the device of the windows and of the output."""

    batch: int
    window_device: torch.device
    output_device: torch.device


class _Progress:
    """Turns window counts into (fraction, stage) reports inside a [start, end) share of the run."""

    def __init__(self, report: ProgressFn) -> None:
        self.report = report
        self.start, self.end, self.stage, self.total, self.done = 0.0, 0.0, "", 1, 0

    def begin(self, start: float, end: float, stage: str, windows: int) -> None:
        self.start, self.end, self.stage, self.total, self.done = start, end, stage, max(windows, 1), 0
        self.report(start, stage)

    def windows_done(self, count: int) -> None:
        self.done += count
        fraction = self.start + (self.end - self.start) * min(self.done / self.total, 1.0)
        self.report(fraction, self.stage)

    def nested(self) -> ProgressFn:
        """A callback for a nested run: its fractions [0, 1] land in the current stage's range, under its name."""
        return lambda fraction, stage: self.report(self.start + (self.end - self.start) * fraction, self.stage)


class Predictor:
    """One network on one device, kept warm between :meth:`predict` calls.

    net: a SegNets network whose forward returns a ``SegmentationOutput`` (``.logits`` (N, C, D, H, W));
    card: its model card; device: "auto", "cpu", "cuda" or "cuda:N". A locator model named in the card
    (``card.roi.locator``) must exist now, a library id in the library at ``library_root`` (default:
    ``$SEGNETS_MODELS`` or ``~/.segnets/models``); it is loaded on the first prediction that locates RoIs.
    """

    def __init__(
        self, net: nn.Module, card: ModelCard, device: str | torch.device = "auto", library_root: Path | None = None
    ) -> None:
        self._locator_files = None if card.roi.locator in LOCATORS else locator_files(card, library_root)
        self._locator: Predictor | None = None  # the locator model's own Predictor, once loaded
        self.card = card
        self.device = resolve_device(device)
        self.net = net.eval()
        self._place(self.device)

    def _place(self, device: torch.device) -> None:
        self.net.to(device=device, memory_format=_memory_format(device))
        self._net_device = device

    def predict(
        self,
        volume: Volume,
        roi: str = "auto",
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
        probabilities: bool = False,
        name: str = "the volume",
    ) -> Prediction:
        """Segment ``volume`` ([k, j, i] or [c, k, j, i] with geometry); see :class:`Prediction`.

        roi "auto" localizes RoIs when the card enables it (``card.roi.mode``), "off" segments the whole
        volume. Raises SegNetsError (naming ``name``) for unusable input and Cancelled when ``cancel``
        is set; nothing is returned or written then.
        """
        if roi not in ROI_CHOICES:
            raise SegNetsError(f"roi {roi!r} is not one of {', '.join(ROI_CHOICES)}.")
        cancel = cancel or CancelToken()
        tracker = _Progress(progress or no_progress)
        tracker.report(0.0, "preprocessing")
        if self._net_device != self.device:
            self._place(self.device)
        locate = roi == "auto" and self.card.roi.mode == "auto"
        # RoI mode never needs the whole network grid unless RU-Net's encoder locates: the coarse pass (this
        # model's, down-sampled) is resampled straight from the input, a locator model reads the input itself,
        # and each box is resampled from a crop of the input
        pre = preprocess(volume, self.card, name, lazy=locate and self.card.roi.locator != "runet")
        cancel.raise_if_cancelled()

        boxes: list[Box] = []
        if locate:
            try:
                boxes = self._locate(pre, tracker, cancel, name)
                if not boxes:
                    log.info("%s: the coarse pass found no structure; segmenting the whole volume.", name)
            except ValueError as error:  # a coarse grid too small for the network: no localization
                if not _single_voxel_level(error):
                    raise
                log.info("%s: the coarse pass's grid is too small for the network; segmenting the whole volume.", name)
        elif roi == "auto":
            log.info("%s: model %r does not use RoI localization; segmenting the whole volume.", name, self.card.id)
        fine_boxes = boxes or [Box(0, 0, 0, *pre.shape)]

        with _fits_the_network(name, pre.shape):
            labelmap, probs = self._fine_pass(pre, fine_boxes, tracker, cancel, probabilities)
        tracker.report(0.9, "post-processing")
        postprocess(labelmap, [label.value for label in self.card.labels], self.card.postprocessing)
        cancel.raise_if_cancelled()
        tracker.report(0.95, "resampling to the input grid")
        source_boxes = [pre.box_to_source(box) for box in fine_boxes]
        result = Prediction(
            labelmap=labelmap_on_source(labelmap, pre, source_boxes),
            probabilities=probabilities_on_source(probs, pre) if probs is not None else None,
            rois=source_boxes if boxes else [],
        )
        cancel.raise_if_cancelled()
        tracker.report(1.0, "done")
        return result

    # -- passes ---------------------------------------------------------------------------------

    def _locate(self, pre: Preprocessed, tracker: _Progress, cancel: CancelToken, name: str) -> list[Box]:
        """Coarse pass over the whole volume; extended network-grid boxes around what it finds."""
        files = self._locator_files
        if files is None:
            boxes = self._own_boxes(pre, tracker, cancel, name)
        else:
            tracker.begin(0.05, 0.2, "locating RoIs", 1)
            labels = (
                self._locator_predictor(files)
                .predict(pre.source, roi="off", progress=tracker.nested(), cancel=cancel, name=name)
                .labelmap.array
            )
            boxes = boxes_from_labelmap(labels, pre, self.card.roi, name)
        log.info(
            "RoI localization: %d box(es) covering %.1f %% of the volume.",
            len(boxes),
            100.0 * sum(b.size for b in boxes) / math.prod(pre.shape),
        )
        return boxes

    def _own_boxes(self, pre: Preprocessed, tracker: _Progress, cancel: CancelToken, name: str) -> list[Box]:
        """This network's coarse pass ("self" or "runet" locator) and the boxes around its labels."""
        settings = self.card.roi
        if settings.locator == "runet":  # the Global Image Encoder's down-sampled mask, as in the paper
            coarse, forward = pre.network_input(), self.net.locate
        else:  # the model itself on a volume down-sampled coarse_factor times
            coarse, _ = pre.coarse_input(settings.coarse_factor)
            forward = self._logits
        tracker.begin(0.05, 0.2, "locating RoIs", window_count(coarse.shape[1:], self._window_size(coarse.shape[1:])))
        logits = self._windows(coarse, forward, tracker, cancel)[0].float().cpu()
        ratio = tuple(n / c for n, c in zip(pre.shape, logits.shape[1:]))
        masks = foreground_masks(logits, self.card.multi_label)
        return boxes_from_masks(masks, ratio, pre.shape, pre.grid.spacing[::-1], settings, name)

    def _locator_predictor(self, files: Path) -> Predictor:
        """The card's locator model (at ``files``) in its own Predictor on this device: loaded on first use, then kept."""
        if self._locator is None:
            net, card = load_locator(self.card, files)
            self._locator = Predictor(net, card, self.device)
        return self._locator

    def _fine_pass(
        self, pre: Preprocessed, boxes: Sequence[Box], tracker: _Progress, cancel: CancelToken, probabilities: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Sliding windows over each box; network-grid labelmap (d, h, w) uint8 and optional probabilities."""
        labelmap = np.zeros(pre.shape, dtype=np.uint8)
        probs = self._background_probabilities(pre.shape) if probabilities else None
        total = sum(box.size for box in boxes)
        start = 0.2
        for index, box in enumerate(boxes):
            share = 0.7 * box.size / total
            stage = "segmenting" if len(boxes) == 1 else f"segmenting RoI {index + 1}/{len(boxes)}"
            tracker.begin(start, start + share, stage, window_count(box.shape, self._window_size(box.shape)))
            logits = self._windows(pre.network_input(box), self._logits, tracker, cancel)[0].float().cpu()
            labelmap[box.slices] = self._labels(logits)
            if probs is not None:
                probs[(slice(None), *box.slices)] = self._activate(logits).numpy()
            del logits
            start += share
        return labelmap, probs

    def _logits(self, windows: torch.Tensor) -> torch.Tensor:
        """Segmentation logits (N, C, d, h, w) of a window batch."""
        return self.net(windows).logits

    def _windows(self, array: np.ndarray, forward: Callable, tracker: _Progress, cancel: CancelToken) -> torch.Tensor:
        """MONAI sliding windows (Gaussian blending) over ``array`` (C, d, h, w): (1, C_out, d', h', w')."""
        inputs = torch.from_numpy(array)[None]
        roi_size = self._window_size(array.shape[1:])
        plans = self._plans(roi_size)
        for attempt, plan in enumerate(plans):
            if plan.window_device != self._net_device:
                self._place(plan.window_device)
            predictor = self._window_function(forward, tracker, cancel)
            try:
                on_gpu = plan.window_device.type == "cuda"
                with (
                    torch.inference_mode(),
                    torch.autocast(plan.window_device.type, torch.float16, enabled=on_gpu),
                    fast_cpu_convolutions(plan.window_device),
                ):
                    return sliding_window_inference(
                        inputs,
                        roi_size,
                        plan.batch,
                        predictor,
                        overlap=OVERLAP,
                        mode="gaussian",
                        sw_device=plan.window_device,
                        device=plan.output_device,
                    )
            except torch.OutOfMemoryError:
                if attempt == len(plans) - 1:
                    raise
                torch.cuda.empty_cache()
                following = plans[attempt + 1]
                log.warning(
                    "Out of GPU memory; retrying with %d window(s) per batch on %s, output on %s.",
                    following.batch,
                    following.window_device,
                    following.output_device,
                )
        raise AssertionError("unreachable")  # the loop returns or raises

    def _window_function(self, forward: Callable, tracker: _Progress, cancel: CancelToken) -> Callable:
        """The predictor MONAI calls per window batch: checks cancel, runs ``forward``, reports progress."""
        device = self._net_device
        memory_format = _memory_format(device)

        def run(windows: torch.Tensor) -> torch.Tensor:
            cancel.raise_if_cancelled()
            out = forward(windows.to(device).contiguous(memory_format=memory_format))
            tracker.windows_done(windows.shape[0])
            return out.float().contiguous()

        return run

    def _plans(self, roi_size: Sequence[int]) -> list[_WindowPlan]:
        """Step-down sequence for out-of-memory: batch, batch 1, output on the CPU, then all on the CPU.

        3D RU-Net's windows go one per forward: it proposes one set of RoIs for all samples of a forward
        (:meth:`RUNet.coarse_masks`), so a batched window would be decoded in its neighbour's RoIs too.
        """
        cpu = torch.device("cpu")
        single = isinstance(self.net, RUNet)
        if self.device.type != "cuda":
            small = math.prod(roi_size) < SMALL_WINDOW_VOXELS and not single
            return [_WindowPlan(2 if small else 1, cpu, cpu)]
        gpu = self.device
        return [
            _WindowPlan(1 if single else CUDA_WINDOW_BATCH, gpu, gpu),
            _WindowPlan(1, gpu, gpu),
            _WindowPlan(1, gpu, cpu),
            _WindowPlan(1, cpu, cpu),
        ]

    def _window_size(self, shape: Sequence[int]) -> tuple[int, int, int]:
        """The window over a region of ``shape``, enlarged to an input size the network takes (ConResNet's fixed
        size, multiples of 8 or of RU-Net's (2, 4, 4) in the paper presets); MONAI pads a region smaller than it."""
        return network_window(self.net, self.card.patch_size, shape)

    # -- outputs ----------------------------------------------------------------------------------

    def _activate(self, logits: torch.Tensor) -> torch.Tensor:
        """(C, d, h, w) logits -> sigmoid (multi-label) or softmax probabilities."""
        return torch.sigmoid(logits) if self.card.multi_label else torch.softmax(logits, dim=0)

    def _labels(self, logits: torch.Tensor) -> np.ndarray:
        """(C, d, h, w) logits -> uint8 label values: argmax (softmax), or the most probable label >= 0.5.

        Works in slabs of :data:`LABEL_SLAB` slices, so the int64 argmax indices never span the whole region.
        """
        values = torch.tensor([0] + [label.value for label in self.card.labels], dtype=torch.uint8)
        out = np.empty(logits.shape[1:], dtype=np.uint8)
        for start in range(0, logits.shape[1], LABEL_SLAB):
            slab = logits[:, start : start + LABEL_SLAB]
            if self.card.multi_label:
                best = slab.max(dim=0)
                labels = torch.where(best.values >= 0, values[best.indices + 1], 0).to(torch.uint8)
            else:
                labels = values[slab.argmax(dim=0)]
            out[start : start + LABEL_SLAB] = labels.numpy()
        return out

    def _background_probabilities(self, shape: Sequence[int]) -> np.ndarray:
        """Network-grid probabilities outside every RoI: background 1 (softmax) or all 0 (multi-label)."""
        probs = np.zeros((self.card.num_classes, *shape), dtype=np.float32)
        if not self.card.multi_label:
            probs[0] = 1.0
        return probs


def _single_voxel_level(error: ValueError) -> bool:
    """Whether ``error`` is a normalization layer's refusal of a single voxel (the region is too small)."""
    return "spatial element" in str(error)


@contextlib.contextmanager
def _fits_the_network(name: str, shape: Sequence[int]) -> Iterator[None]:
    """Turn the error of a normalization layer left with a single voxel into one naming the input."""
    try:
        yield
    except ValueError as error:
        if not _single_voxel_level(error):
            raise
        size = " x ".join(str(s) for s in shape)
        raise SegNetsError(
            f"{name}: at the model's spacing the volume is {size} voxels, too small for the network (its deepest "
            "level would hold a single voxel)."
        ) from None


def window_size(patch_size: Sequence[int], shape: Sequence[int]) -> tuple[int, int, int]:
    """The sliding window over a region of ``shape``: the card's ``patch_size``, shrunk to the region where
    the region is smaller (no padded windows)."""
    return tuple(min(int(p), int(s)) for p, s in zip(patch_size, shape))  # type: ignore[return-value]


def network_window(net: nn.Module, patch_size: Sequence[int], shape: Sequence[int]) -> tuple[int, int, int]:
    """The window ``net`` runs on over a region of ``shape``: :func:`window_size`, enlarged to an input size the
    network takes where it has an ``input_size`` (paper-preset ConResNet and 3D RU-Net); MONAI pads the region."""
    return taken_size(net, window_size(patch_size, shape))


def taken_size(net: nn.Module, size: Sequence[int]) -> tuple[int, int, int]:
    """``size`` (d, h, w), enlarged to an input size ``net`` takes where it has an ``input_size`` (a paper-preset
    ConResNet's fixed size, a paper-preset 3D RU-Net's multiples of 2 x 4 x 4); as it is for the others."""
    fit = getattr(net, "input_size", None)
    return tuple(int(n) for n in (fit(size) if fit is not None else size))  # type: ignore[return-value]


def _memory_format(device: torch.device) -> torch.memory_format:
    """channels-last-3d for the network and its windows on CUDA, the default layout elsewhere."""
    return torch.channels_last_3d if device.type == "cuda" else torch.contiguous_format


def window_count(shape: Sequence[int], roi_size: Sequence[int]) -> int:
    """Number of sliding windows MONAI places over ``shape`` with ``roi_size`` and :data:`OVERLAP`."""
    count = 1
    for size, window in zip(shape, roi_size):
        step = window if window >= size else max(int(window * (1 - OVERLAP)), 1)
        count *= math.ceil(max(size - window, 0) / step) + 1
    return count
