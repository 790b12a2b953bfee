"""The inputs SegNets is tried with and what each gets: the one list behind ``docs/robustness.md``.

Tests look their case up with :func:`expect` (the message must match the case's ``pattern``) or
:func:`examples` (the fuzzing tests' mutation counts), and ``Testing/fuzz/test_table.py`` checks that
the document is this list rendered (``python Testing/helpers/robustness_cases.py`` rewrites it).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "robustness.md"


@dataclass(frozen=True)
class Case:
    input: str  # what was tried
    gets: str  # what SegNets answers (an example message, or the result)
    pattern: str  # regular expression every such message matches
    test: str  # the test that tries it
    fuzz: tuple[int, int] | None = None  # hypothesis examples: (default suite, slow suite)


CASES: dict[str, Case] = {
    "huge-network": Case(
        "card.json asking for `base_channels` 100000 or 1500 (2 TB / 42 GB networks)",
        "refused before anything is allocated: “card.json: unet3d (preset 'default', 1 input channel, 3 classes, base_channels=100000, levels=2) would take 34943.25 GiB, "
        "more than the 4.00 GiB SegNets loads; its build_args are not those of a usable network.”",
        r"would take .* more than the 4\.00 GiB SegNets loads",
        "Testing/models/test_limits.py",
    ),
    "header-mismatch": Case(
        "weights whose safetensors header declares a tensor 100 000 times larger (data a sparse hole)",
        "“weights.safetensors has tensor '…' of shape (200000, …) where (…) is expected for unet3d (…).”",
        r"has tensor '.*' of shape .* where .* is expected",
        "Testing/models/test_limits.py",
    ),
    "no-memory": Case(
        "a sound 300 MB model loaded where less memory is left than loading needs (address-space limit)",
        "“…: loading unet3d (…) needs about 0.57 GiB of memory but only … is available; close other programs …”",
        r"needs about .* of memory but only .* is available",
        "Testing/models/test_limits.py",
    ),
    "bad-build-args": Case(
        "build_args a constructor chokes on (negative or zero width, 400 levels, a float width, unknown keys)",
        "“card.json: field 'build_args' does not make a unet3d network (…).”",
        r"field 'build_args' does not (fit|make)",
        "Testing/models/test_limits.py",
    ),
    "tiny-spacing": Case(
        "a volume with 1e-9 mm spacing, or 1e6 mm",
        "“ct.nii.gz: voxel spacing (1e-09, 1e-09, 1e-09) mm is outside 0.0001 to 10000 mm; the file's geometry is wrong.”",
        r"voxel spacing .* mm is outside 0\.0001 to 10000 mm",
        "Testing/inference/test_preprocess.py",
    ),
    "grid-too-small": Case(
        "a volume whose extent is under two voxels of the model's spacing (e.g. 1e-4 mm spacing, 6 mm model)",
        "“ct.nii.gz: at the model's 6x6x6 mm spacing the volume is only 1 x 1 x 1 voxels, less than one window; …”",
        r"at the model's .* spacing the volume is only .* voxels, less than one window",
        "Testing/inference/test_preprocess.py",
    ),
    "grid-too-large": Case(
        "a volume that would be more than 2^30 voxels at the model's spacing (9000 mm spacing)",
        "“ct.nii.gz: at the model's 6x6x6 mm spacing the volume would be 30000 x 36000 x 33000 voxels, more than "
        "the 1,073,741,824-voxel limit; …”",
        r"would be .* voxels, more than the 1,073,741,824-voxel limit",
        "Testing/inference/test_preprocess.py",
    ),
    "version-taken": Case(
        "a trained model whose version another save took meanwhile",
        "kept aside: “model 'm' version 1.0.0 could not be added to the library at … (model 'm' version 1.0.0 is "
        "already in the library; …); the trained model is kept in …/recovered/m-1.0.0-…, add it later with "
        "'segnets models import …' (with --version to give it another version).”",
        r"could not be added to the library at .*already in the library.*the trained model is kept in",
        "Testing/models/test_recovery.py",
    ),
    "library-read-only": Case(
        "a trained model (fine-tune or train) saved to a read-only library folder",
        "kept aside: “model … could not be added to the library at … (Permission denied / Operation not "
        "permitted); the trained model is kept in …”",
        r"could not be added to the library at .*\((Permission denied|Operation not permitted|Read-only file system)\);"
        r" the trained model is kept in",
        "Testing/models/test_recovery.py",
    ),
    "disk-full": Case(
        "a trained model saved to a library whose disk is full (256 KiB tmpfs)",
        "kept aside: “model … could not be added to the library at … (No space left on device); the trained model "
        "is kept in …”",
        r"could not be added to the library at .*No space left on device.*the trained model is kept in",
        "Testing/models/test_recovery.py",
    ),
    "kill-9": Case(
        "kill -9 of a process adding, exporting and removing models, at random points",
        "the library lists its old model unchanged and every listed version and written zip loads",
        r".",
        "Testing/models/test_recovery.py",
        fuzz=(2, 8),
    ),
    "card-deep": Case(
        "card.json nested 40, 600 or 100 000 levels deep (an extra key of a training record), loaded and imported",
        "“model/card.json: nests more than 32 levels of objects and lists; not a model card.” (a real card nests 6)",
        r"nests more than 32 levels of objects and lists; not a model card",
        "Testing/fuzz/test_model_files.py",
    ),
    "zip-entry-damaged": Case(
        "a model zip whose weights entry is bzip2 or lzma data that does not decompress, or is flagged as encrypted",
        "“model.zip: entry weights.safetensors cannot be read (…).” / “model.zip: entry 'weights.safetensors' is "
        "encrypted; SegNets reads model zips without a password.”",
        r"entry weights\.safetensors cannot be read|is encrypted; SegNets reads model zips without a password",
        "Testing/fuzz/test_model_files.py",
    ),
    "weights-values": Case(
        "weights of the right names and shapes holding NaN, infinity, uint8 or bool values, loaded and imported",
        "“…: tensor '…' holds NaN or infinite values; the weights are damaged.” / “…: tensor '…' holds uint8 values "
        "where the network holds float32; they are not this network's weights.” Nothing imported.",
        r"holds NaN or infinite values; the weights are damaged|values where the network holds .*; they are not",
        "Testing/fuzz/test_model_files.py",
    ),
    "zip-inflating": Case(
        "a 1 MiB model zip whose weights entry inflates to 1 GiB (within the 4 GiB bound of any network)",
        "refused before the temporary folder holds more than the card's network can: “bomb.zip: weights.safetensors "
        "would unpack to 1,073,…,… bytes, more than the …-byte limit.”",
        r"weights\.safetensors would unpack to [\d,]+ bytes, more than the [\d,]+-byte limit",
        "Testing/fuzz/test_model_files.py",
    ),
    "upload-not-volume-name": Case(
        "SegNets Web upload of an HTML page (`page.html`) or a zip (`model.zip`)",
        "“'page.html' is not a volume file SegNets reads (use one of .nii.gz, .nii, .nrrd, .nhdr, .mha, .mhd).” "
        "The scene stays as it was.",
        r"is not a volume file SegNets reads",
        "Testing/web/test_loading.py",
    ),
    "upload-wrong-content": Case(
        "an upload or `--data` file whose content is not its format: HTML or a zip named .nii.gz / .nii / .nrrd, "
        "zeros named .mha, an empty .nrrd, a 2 GB sparse file of zeros named .nii or .nrrd",
        "refused from its first bytes, nothing written, memory growth under 64 MiB: “'zeros.nii' is not a NIfTI "
        "volume: it starts with '\\x00\\x00…' instead of a NIfTI header.”",
        r"is not a .* volume: it starts with .* instead of a .* header|is empty \(0 bytes\); upload the .* volume itself",
        "Testing/web/test_loading.py",
    ),
    "upload-detached": Case(
        "an upload of a detached header (`.mhd`, `.nhdr`) alone",
        "“'ct.mhd' is a header whose voxels are in another file; upload a single-file volume (.nii, .nii.gz, "
        ".nrrd or .mha).”",
        r"is a header whose voxels are in another file",
        "Testing/web/test_loading.py",
    ),
    "upload-channels": Case(
        "a SegNets Web upload of several channels: a 4D NIfTI (channels last, as the Medical Segmentation Decathlon "
        "stores them) or a vector NRRD",
        "“'brain.nii.gz' holds 2 channels; SegNets Web shows single-channel volumes (segnets segment takes "
        "several).” The scene stays as it was.",
        r"holds \d+ channels; SegNets Web shows single-channel volumes",
        "Testing/web/test_loading.py",
    ),
    "upload-segmentation": Case(
        "a SegNets Web upload or `--data` file that is a segmentation (`.seg.nrrd`, from 3D Slicer or a download)",
        "“'liver.seg.nrrd' is a segmentation, not an image: open the image (CT, MR) to segment; SegNets Web loads no "
        "segmentation file.” The scene stays as it was; a `--data` folder's `.seg.nrrd` files are not listed.",
        r"is a segmentation, not an image: open the image \(CT, MR\) to segment",
        "Testing/web/test_loading.py",
    ),
    "output-over-input": Case(
        "`segnets segment` / `finetune` asked to write a result onto an input (the annotation, the image, a scan of "
        "the input folder, probabilities over the segmentation), two inputs of a folder whose results share a name, "
        "a detached header (`.mhd`, `.nhdr`) or a place under a file",
        "refused before any work, nothing written: “painted.seg.nrrd: writing there would overwrite --annotations "
        "painted.seg.nrrd; give another output file.” / “out/a.seg.nrrd: the results of a.nii.gz and a.nrrd would "
        "both be written there; rename one of the two inputs.” / “out.mhd: unknown output type; …” / “…: ct.nii.gz "
        "is a file, not a folder; …”",
        r"would overwrite --|would both be written there|unknown output type|is a file, not a folder|"
        r"can be written only as",
        "Testing/commands/test_segment.py",
    ),
    "round-lost-painting": Case(
        "a correction round whose annotation file holds only the new slice (the earlier rounds' painting missing)",
        "refused before training: “round2.seg.nrrd holds none of the painting of the earlier rounds (axis 0: 3, 8); "
        "give the whole painting, every round's slices with the new one.” (some of them empty: learned as "
        "background, with a note)",
        r"holds none of the painting of the earlier rounds",
        "Testing/finetune/test_rounds.py",
    ),
    "round-lost-label": Case(
        "a correction round (panel, web page, command) whose painting holds none of a class the earlier rounds learned "
        "(its segment renamed, left out or erased)",
        "refused before training: “the segmentation 'annotation' holds no 'tumor' (label 2), which the earlier rounds "
        "of …@1.0.0 learned: this round would learn it as background on every painted slice; paint it again, or give "
        "the segment 'lesion' its name back if it was renamed.”",
        r"holds no .*, which the earlier rounds of .* learned",
        "Testing/app/test_correction.py",
    ),
    "round-removed": Case(
        "*Back one round* (panel, web page) from a round whose previous round's version was removed from the library "
        "(`segnets models remove`) or never imported",
        "“liver@1.2.0 (round 3) continued liver@1.1.0, which is not in the model library … (removed, or never "
        "imported); select an earlier round's model instead (liver@1.0.0).”; nothing is selected or changed",
        r"continued .*, which is not in the model library",
        "Testing/finetune/test_rounds.py",
    ),
    "train-time-limit": Case(
        "`segnets train --time-limit` 20 s with a 100 000-iteration epoch, and 15 s with 15-iteration epochs (CPU)",
        "ends within 5 % (or 2 s): the epoch is cut short, validated and saved; the log says “Time limit of 20 s: "
        "epoch 1 was cut short after … of 100000 iterations; the run ends.”; progress logged and in log.json "
        "while the epoch runs",
        r"returned after .* s",
        "Testing/training/test_time_limit.py",
    ),
    "finetune-time-limit": Case(
        "`segnets finetune` with a 12 s time limit (CPU, from scratch, refinement on)",
        "ends within 5 % (or 2 s) of the limit",
        r"returned after .* s",
        "Testing/finetune/test_time_limit.py",
    ),
    "inference-memory": Case(
        "whole-volume inference of a 128 x 224 x 224 volume on the CPU (the input's own grid, no RoI)",
        "peak memory growth within the documented bound: twice the volume as float32 plus 64 MiB (sliding "
        "windows, slab-wise statistics; no whole-volume float64 copy)",
        r"peak growth .* MiB of .* MiB allowed",
        "Testing/inference/test_memory_bound.py",
    ),
    "probabilities-memory": Case(
        "per-class probabilities (3 x 64 x 256 x 256) written to a `.nii.gz`",
        "peak memory growth under 2.4 times the probabilities: SimpleITK's interleaved copy and ITK's planar one "
        "(numpy's interleaved copy is freed before writing)",
        r"peak growth .* x the probabilities, under 2.4",
        "Testing/inference/test_memory_bound.py",
    ),
    "fuzz-card": Case(
        "card.json with 1-3 fields replaced by any JSON value (wrong types, 2^70, NaN, infinities, unicode, "
        "nested objects), deleted, lengthened 50 times, or unknown keys added; loaded and imported",
        "a valid model, or e.g. “card.json: field 'labels[0].color' must have exactly 3 items, not 0.” / “card.json: "
        "field 'build_args' does not make a unet3d network (…).” / “… would take … more than the 4.00 GiB …”",
        r".",
        "Testing/fuzz/test_model_files.py",
        fuzz=(40, 1000),
    ),
    "fuzz-card-text": Case(
        "card.json bytes cut, spliced with random bytes, invalid UTF-8",
        "a valid card, or “card.json: not valid JSON (…).” / a field error",
        r".",
        "Testing/fuzz/test_model_files.py",
        fuzz=(30, 1000),
    ),
    "fuzz-safetensors": Case(
        "weights.safetensors whose header entries have other dtypes, shapes, offsets (huge, negative, "
        "overlapping) or extra tensors, a lying 8-byte header length (up to 2^64), or a truncated file",
        "“weights.safetensors: not a complete safetensors file, it may be truncated or damaged (tensor '…' of "
        "shape … lies outside the file's data).” or a shape mismatch; never a read of the declared size",
        r".",
        "Testing/fuzz/test_model_files.py",
        fuzz=(40, 1000),
    ),
    "fuzz-zip": Case(
        "model zips of 0-4 entries named `../card.json`, `/weights.safetensors`, `C:/…`, `a/b/card.json`, "
        "unicode or random text, holding the card, the weights, random bytes or 24 MB of zeros (deflated), "
        "with lying sizes in the central directory, or truncated",
        "“model.zip: entry '../card.json' points outside the archive; the zip is refused.” / “… has no card.json …” "
        "/ “… unpacks to more than … bytes; the zip is refused.” / “not a readable zip archive”; nothing "
        "unpacked besides the two model files, no temporary folder left",
        r".",
        "Testing/fuzz/test_model_files.py",
        fuzz=(25, 600),
    ),
    "card-control-character": Case(
        "card.json with an unknown key that is a newline (found by the long fuzzing run)",
        "“card.json: field 'labels[0].\\\\n' is not a card field.” (control characters escaped: one line)",
        r"field 'labels\[0\]\.\\n' is not a card field",
        "Testing/fuzz/test_model_files.py",
    ),
    "build-args-line-break": Case(
        "card.json whose build_args hold a key that is a newline (found by the long fuzzing run)",
        "“card.json: field 'build_args' does not fit unet3d (invalid unet3d option '\\\\n': not an argument name).” "
        "(one line: Python's own message quoted the key and broke the line)",
        r"field 'build_args' does not fit unet3d \(invalid unet3d option '\\n': not an argument name\)\.$",
        "Testing/fuzz/test_model_files.py",
    ),
    "zip-empty-name": Case(
        "a model zip with an extra entry whose name is empty (cut at a NUL; found by the long fuzzing run)",
        "the entry is skipped and the model loads (it made zipfile raise IndexError before)",
        r"^ok$",
        "Testing/fuzz/test_model_files.py",
    ),
    "nifti-sform-infinite": Case(
        "a NIfTI file whose sform row holds an infinite value (ITK's header reader never returns on some; found "
        "by the long fuzzing run)",
        "refused before ITK reads it: “ct.nii: the NIfTI header's srow_x/y/z (sform) holds a value that is not "
        "finite: (0.0, 0.0, 0.0, -0.0, 0.0, inf, …).”",
        r"the NIfTI header's srow_x/y/z \(sform\) holds a value that is not finite",
        "Testing/imageio/test_nifti_header.py",
    ),
    "file-cut-short": Case(
        "a NIfTI file (or its gzip stream), a MetaImage file or a .mhd's voxel file shorter than its header declares (a "
        "copy cut short; RGB24 declared on int16 voxels crashed ITK's NIfTI reader in the long fuzzing run; ITK fills a "
        "short gzip stream with zeros, silently)",
        "“ct.nii: the file holds 17,632 bytes but its NIfTI header declares 26,272 (the file is cut short or the "
        "header is wrong).”",
        r"the file holds [\d,]+ bytes but its (NIfTI|MetaImage) header declares [\d,]+",
        "Testing/imageio/test_nifti_header.py",
    ),
    "mha-header": Case(
        "a MetaImage file (.mha, .mhd) whose NDims is -3 or 100 (ITK's reader crashes: a segmentation fault or a "
        "corrupted heap) or whose TransformMatrix holds 1e308 (it never returns); found by fuzzing the header",
        "refused before ITK reads it: “ct.mha: the MetaImage header's NDims -3 is not from 1 to 4.” / “… "
        "TransformMatrix holds a value beyond ±1,000,000, not axis directions.”",
        r"the MetaImage header's (NDims .* is not from 1 to 4|TransformMatrix holds a value beyond)",
        "Testing/imageio/test_metaimage_header.py",
    ),
    "nrrd-huge-directions": Case(
        "a NRRD file whose space directions are 1e200 mm long (ITK reads such an axis as 1 mm with no direction, "
        "silently)",
        "“ct.nrrd: voxel spacing (1e+200, 1e+200, 1e+200) mm is outside 0.0001 to 10000 mm; the file's geometry is "
        "wrong.”",
        r"voxel spacing .* mm is outside 0\.0001 to 10000 mm",
        "Testing/imageio/test_nrrd_header.py",
    ),
    "fuzz-nifti": Case(
        "NIfTI files with 1-3 header fields changed: dim (dimension count, sizes up to 32767), datatype, bitpix, "
        "pixdim (0, negative, NaN, 1e30), vox_offset, scaling, qform/sform codes, quaternions, affine rows; "
        "read and preprocessed for a 6 mm model",
        "a volume, or e.g. “ct.nii: not a readable image file (…).” / “… voxel spacing … mm is outside 0.0001 to "
        "10000 mm …” / “… the header declares … voxels …, more than the 2,147,483,648 SegNets reads …” / “… the "
        "axis directions are not a rotation …” / “… is constant …” / “… the NIfTI header's … is not …” / “… the "
        "file holds … bytes but its NIfTI header declares …”",
        r".",
        "Testing/fuzz/test_volume_files.py",
        fuzz=(40, 1000),
    ),
    "fuzz-nrrd": Case(
        "NRRD files with type, dimension, sizes (up to 9999999999), space directions (zero, NaN, 1e30), origin, "
        "encoding, endian, space or kinds replaced by odd or random text, or dropped; read and preprocessed",
        "a volume, or a one-sentence refusal naming the file (unreadable header, not 3D, spacing, size)",
        r".",
        "Testing/fuzz/test_volume_files.py",
        fuzz=(40, 1000),
    ),
    "fuzz-mha": Case(
        "MetaImage files with NDims (0 to 100, -3), DimSize, spacing, origin, centre and matrix (NaN, inf, 1e308, too "
        "few or many numbers), element type and channels, binary and compressed flags or header size replaced by odd "
        "or random text, or dropped; read and preprocessed",
        "a volume, or a one-sentence refusal naming the file (the MetaImage header's field, unreadable, not 3D, "
        "spacing, size)",
        r".",
        "Testing/fuzz/test_volume_files.py",
        fuzz=(40, 1000),
    ),
    "fuzz-annotation": Case(
        "annotation labelmaps (.nrrd, .nii.gz, .mha) of every pixel type with labels -1, 70000, 2^31-1, 1.5, NaN, "
        "on other shapes, spacings, origins (whole and part voxels) and directions",
        "placed on the image's grid when it is a crop of it, else e.g. “labels.nrrd has a different geometry from "
        "the image (origin (…) against (…)); resample it onto the image first.” / “… must hold non-negative integer "
        "labels.” / “… holds the label value 70000; label values must lie between 0 and 255.” / "
        "“… the labelmap holds non-integer values.”",
        r".",
        "Testing/fuzz/test_annotation_files.py",
        fuzz=(30, 800),
    ),
    "fuzz-dataset": Case(
        "training datasets whose dataset.json has 1-2 fields replaced, deleted or grown (labels, channel_names, "
        "file_ending, numTraining, …) and a label file with labels out of range, negative or fractional, "
        "another origin or size",
        'a dataset, or e.g. “…/dataset.json: needs "labels", e.g. {…}.” / “…: holds label values [9] not in '
        "dataset.json …” / “…: its geometry (origin, direction, spacing) differs from image …”",
        r".",
        "Testing/fuzz/test_dataset_files.py",
        fuzz=(20, 500),
    ),
}


def expect(key: str, message: str) -> None:
    """Assert that ``message`` is what the table says case ``key`` gets."""
    pattern = CASES[key].pattern
    assert re.search(pattern, message), f"{key}: {message!r} does not match {pattern!r}"


def examples(key: str, slow: bool = False) -> int:
    """How many mutations the fuzzing test of case ``key`` tries (default suite, or the slow one)."""
    counts = CASES[key].fuzz
    assert counts is not None, key
    return counts[1] if slow else counts[0]


def render() -> str:
    """docs/robustness.md as this list gives it."""
    lines = [
        "# Robustness: inputs tried and what each gets",
        "",
        "Generated from `Testing/helpers/robustness_cases.py` (`python Testing/helpers/robustness_cases.py`); "
        "`Testing/fuzz/test_table.py` fails when this file and that list differ, and every test named here",
        "asserts that its messages match the case's pattern. The promise for every input: a one-sentence",
        "`SegNetsError` (or a valid result), never another exception, never a write outside the intended",
        "place, never more than a bounded amount of memory. Mutations are hypothesis examples per run:",
        "default suite / `slow` suite.",
        "",
        "| Input tried | Mutations | What it gets | Test |",
        "|---|---|---|---|",
    ]
    for case in CASES.values():
        mutations = f"{case.fuzz[0]} / {case.fuzz[1]}" if case.fuzz else "1"
        cells = [case.input, mutations, case.gets, f"`{case.test}`"]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    DOC.write_text(render(), encoding="utf-8")
    sys.stdout.write(f"wrote {DOC}\n")
