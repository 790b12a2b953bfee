"""Constants shared by the library and the ``segnets`` command line.

This module imports nothing heavy (no torch, MONAI, SimpleITK), so that building the command-line
parser stays fast; the library modules that use these values import them from here.
"""

from __future__ import annotations

# SegNetsLib.runtime.devices: what a user may name as compute device
DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda", "cuda:N", "mps")

# SegNetsLib.inference.predictor: RoI modes of Predictor.predict
ROI_CHOICES: tuple[str, ...] = ("auto", "off")

# SegNetsLib.imageio.volumes: file name endings of the volume formats SegNets reads
VOLUME_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
WRITTEN_VOLUME_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".mha")  # one file each: written atomically

# SegNetsLib.imageio.segmentations: file name ending of a Slicer segmentation file
SEGMENTATION_SUFFIX: str = ".seg.nrrd"

# SegNetsLib.nets: network architectures (each a module of that package) and network presets
ARCHITECTURES: tuple[str, ...] = ("unet3d", "vnet", "conresnet", "runet")
PRESETS: tuple[str, ...] = ("default", "paper")

# SegNetsLib.models.library: environment variable naming the model library folder
MODELS_ENV_VAR: str = "SEGNETS_MODELS"
