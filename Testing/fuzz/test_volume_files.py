"""Fuzzing the volume readers: NIfTI header fields, NRRD and MetaImage header lines, through reading and
preprocessing."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import SimpleITK as sitk
from fuzz_helpers import HEADER_TEST_VOXELS, written_volume
from fuzzing import LENGTHS, fuzz
from hypothesis import strategies as st
from inference_helpers import TINY_CARD

from SegNetsLib.imageio.volumes import read_volume
from SegNetsLib.inference.preprocess import preprocess

# NIfTI-1 header fields (offset, struct format, count) a scanner or a converter may write oddly
NIFTI_FIELDS = {
    "dim": (40, "h", 8),
    "intent_code": (68, "h", 1),
    "datatype": (70, "h", 1),
    "bitpix": (72, "h", 1),
    "pixdim": (76, "f", 8),
    "vox_offset": (108, "f", 1),
    "scl_slope": (112, "f", 1),
    "scl_inter": (116, "f", 1),
    "xyzt_units": (123, "B", 1),
    "qform_code": (252, "h", 1),
    "sform_code": (254, "h", 1),
    "quatern": (256, "f", 6),
    "srow": (280, "f", 12),
}
ODD_FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from([0.0, -1.0, 1e-9, 1e6, 1e30, 3.0e38, 1.0]),
)
ODD_INTS = {
    "h": st.one_of(st.integers(-(2**15), 2**15 - 1), st.sampled_from([0, 1, 2, 3, 4, 7, 8, 16, 64, 128, 511, 1536])),
    "B": st.integers(0, 255),
}


def _base(tmp_path_factory, name: str) -> bytes:
    return written_volume(tmp_path_factory.mktemp("fuzz-volume"), name)


@pytest.fixture(scope="module")
def nifti(tmp_path_factory) -> bytes:
    return _base(tmp_path_factory, "ct.nii")


@pytest.fixture(scope="module")
def nrrd(tmp_path_factory) -> bytes:
    return _base(tmp_path_factory, "ct.nrrd")


@st.composite
def nifti_changes(draw):
    changes = []
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(sorted(NIFTI_FIELDS)))
        offset, kind, count = NIFTI_FIELDS[name]
        index = draw(st.integers(0, count - 1))
        value = draw(ODD_FLOATS if kind == "f" else ODD_INTS[kind])
        changes.append((offset + index * struct.calcsize(kind), kind, value))
    return changes


def _read_and_preprocess(path):
    def call():
        volume = read_volume(path)
        preprocess(volume, TINY_CARD, str(path), lazy=True)

    return call


@pytest.mark.parametrize("long", LENGTHS)
def test_mutated_nifti_headers(nifti, workspace, long):
    """dim (dimensions, sizes up to 32767), datatype and bitpix, pixdim (spacing: 0, negative, NaN, 1e30),
    vox_offset, scaling, qform / sform codes, quaternions and affine rows."""

    def attempt(changes, folder):
        raw = bytearray(nifti)
        for offset, kind, value in changes:
            struct.pack_into("<" + kind, raw, offset, value)
        path = folder / "ct.nii"
        path.write_bytes(bytes(raw))
        return _read_and_preprocess(path)

    fuzz("fuzz-nifti", long, nifti_changes(), attempt, workspace)


NRRD_VALUES = {
    "type": st.sampled_from(["short", "int", "float", "double", "uchar", "int64", "block", "rgb", "", "complex"]),
    "dimension": st.sampled_from(["0", "1", "2", "3", "4", "16", "-3", "x"]),
    "sizes": st.lists(st.sampled_from(["0", "1", "8", "9", "10", "-1", "65535", "2147483647", "9999999999", "a"]),
                      min_size=0, max_size=5).map(" ".join),
    "space directions": st.lists(
        st.sampled_from(["(1,0,0)", "(0,0,0)", "(nan,0,0)", "(1e30,0,0)", "(0,1e-9,0)", "none", "(1,1)", "(inf,0,0)"]),
        min_size=0, max_size=4,
    ).map(" ".join),
    "space origin": st.sampled_from(["(0,0,0)", "(nan,nan,nan)", "(1e308,0,0)", "(0,0)", "x"]),
    "encoding": st.sampled_from(["raw", "gzip", "ascii", "bzip2", "hex", "nonsense"]),
    "endian": st.sampled_from(["little", "big", "middle"]),
    "space": st.sampled_from(["left-posterior-superior", "right-anterior-superior", "scanner-xyz", "3D-x", "?"]),
    "kinds": st.sampled_from(["domain domain domain", "RGB-color domain domain domain", "list", ""]),
}  # fmt: skip


@st.composite
def header_changes(draw, values: dict):
    """1-3 header fields of ``values`` (key -> strategy) given odd values or random text, and whether the
    changed lines are dropped instead."""
    changes = {}
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(sorted(values)))
        changes[key] = draw(values[key] | st.text(max_size=16).filter(lambda t: "\n" not in t))
    return changes, draw(st.booleans())


def _changed_lines(lines: list[str], changes: dict, drop: bool, separator: str) -> str:
    """Header ``lines`` (``key<separator>value``) with ``changes`` replacing, or dropping, their fields; changed
    fields the header lacks are added at its end."""
    keys = [line.split(separator, 1)[0] for line in lines]
    out = []
    for key, line in zip(keys, lines):
        if key not in changes:
            out.append(line)
        elif not drop:
            out.append(f"{key}{separator}{changes[key]}")
    out += [f"{key}{separator}{text}" for key, text in changes.items() if key not in keys]
    return "\n".join(out)


@pytest.mark.parametrize("long", LENGTHS)
def test_mutated_nrrd_headers(nrrd, workspace, long):
    """type, dimension, sizes, space directions and origin, encoding, endian, space, kinds: replaced by odd
    or random values, or the line dropped."""
    header, _, data = nrrd.partition(b"\n\n")
    lines = header.decode("latin-1").split("\n")

    def attempt(value, folder):
        path = folder / "ct.nrrd"
        path.write_bytes(_changed_lines(lines, *value, ": ").encode("utf-8", "surrogatepass") + b"\n\n" + data)
        return _read_and_preprocess(path)

    fuzz("fuzz-nrrd", long, header_changes(NRRD_VALUES), attempt, workspace)


@pytest.fixture(scope="module")
def mha(tmp_path_factory) -> bytes:
    return _base(tmp_path_factory, "ct.mha")


MHA_NUMBERS = st.sampled_from(["0", "1", "-1", "3", "4", "nan", "inf", "-inf", "1e30", "1e308", "1e-9", "9999999999",
                               "2147483647", "x", ""])  # fmt: skip
MHA_VALUES = {
    "ObjectType": st.sampled_from(["Image", "Mesh", "Tube", ""]),
    "NDims": st.sampled_from(["0", "1", "2", "3", "4", "5", "16", "100", "-3", "x"]),
    "BinaryData": st.sampled_from(["True", "False", "x"]),
    "BinaryDataByteOrderMSB": st.sampled_from(["True", "False", "x"]),
    "CompressedData": st.sampled_from(["True", "False"]),
    "CompressedDataSize": st.sampled_from(["0", "-1", "10", "99999999999"]),
    "AnatomicalOrientation": st.sampled_from(["RAI", "LPS", "???", ""]),
    "ElementType": st.sampled_from(["MET_SHORT", "MET_FLOAT", "MET_UCHAR", "MET_DOUBLE", "MET_LONG_LONG", "MET_NONE",
                                    "MET_OTHER", "MET_FLOAT_ARRAY", "MET_STRING", "x"]),
    "ElementNumberOfChannels": st.sampled_from(["0", "1", "3", "-1", "1000000", "x"]),
    "HeaderSize": st.sampled_from(["0", "-1", "1000000", "x"]),
    **{key: st.lists(MHA_NUMBERS, min_size=0, max_size=16).map(" ".join)
       for key in ("TransformMatrix", "Offset", "CenterOfRotation", "ElementSpacing", "DimSize")},
}  # fmt: skip


@pytest.mark.parametrize("long", LENGTHS)
def test_mutated_metaimage_headers(mha, workspace, long):
    """NDims, sizes, spacing, origin, centre and matrix (NaN, 1e308, too few or many numbers), element type and
    channels, binary / compressed flags, header size: replaced by odd or random values, or the line dropped."""
    header, mark, data = mha.partition(b"ElementDataFile = LOCAL\n")
    lines = header.decode("latin-1").splitlines()

    def attempt(value, folder):
        path = folder / "ct.mha"
        path.write_bytes(_changed_lines(lines, *value, " = ").encode("utf-8", "surrogatepass") + b"\n" + mark + data)
        return _read_and_preprocess(path)

    fuzz("fuzz-mha", long, header_changes(MHA_VALUES), attempt, workspace)


@pytest.mark.parametrize(
    "dtype", [np.uint8, np.int8, np.uint16, np.int16, np.int32, np.uint32, np.int64, np.float32, np.float64]
)
def test_each_pixel_type_reads_or_is_refused_in_one_sentence(tmp_path, dtype):
    from fuzz_helpers import keeps_the_promise

    path = tmp_path / "ct.nrrd"
    image = sitk.GetImageFromArray(HEADER_TEST_VOXELS.astype(dtype))
    image.SetSpacing((4.0, 4.0, 5.0))
    sitk.WriteImage(image, str(path))
    assert keeps_the_promise(_read_and_preprocess(path)) == "ok"
