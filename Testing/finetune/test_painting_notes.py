"""Notes on paintings whose meaning a painter may not expect: consecutive slices, a label left out of a slice."""

from __future__ import annotations

import numpy as np

from SegNetsLib.core.annotation import annotated_slices, weight_map
from SegNetsLib.core.volume import Volume
from SegNetsLib.finetune.options import FinetuneOptions
from SegNetsLib.finetune.painting_notes import painting_notes
from SegNetsLib.finetune.run import finetune


def _notes(labels, slices, ignore_value, names=None, from_scratch=False) -> list[str]:
    """:func:`painting_notes` with the weight map the fine-tune computes beside them."""
    return painting_notes(labels, weight_map(labels, slices, ignore_value), slices, ignore_value, names, from_scratch)


def _painted(slices, shape=(20, 8, 8), label=1) -> np.ndarray:
    labels = np.zeros(shape, np.uint8)
    for k in slices:
        labels[k, 2:6, 2:6] = label
    return labels


def test_consecutive_slices_from_scratch_are_noted_and_slices_a_gap_apart_are_not():
    labels = _painted((9, 10))
    (note,) = _notes(labels, {0: [9, 10]}, 255, from_scratch=True)
    assert note.startswith("slices 9-10 along axis 0 are painted one after another")
    assert "Fill between slices" not in note  # two slices: nothing filled between them
    assert _notes(labels, {0: [9, 10]}, 255, from_scratch=False) == []  # a pretrained model is not limited
    assert _notes(_painted((6, 10)), {0: [6, 10]}, 255, from_scratch=True) == []
    ends_shown = _painted((10,))  # slices 9 and 11 painted empty: the painter showed where it ends
    assert _notes(ends_shown, {0: [9, 10, 11]}, 255, from_scratch=True) == []
    everything = _painted(range(20))  # every slice of the axis: nothing lies beyond
    assert _notes(everything, {0: list(range(20))}, 255, from_scratch=True) == []


def test_a_label_left_out_of_a_painted_slice_between_two_that_hold_it_is_named():
    labels = _painted((5, 10, 15))
    labels[10] = 0
    labels[10, 1, 1] = 2  # another organ painted on slice 10 alone: the liver is background there
    notes = _notes(labels, {0: [5, 10, 15]}, 255, names={1: "liver", 2: "kidney"})
    assert notes == [
        "liver is absent from painted slice(s) 10 along axis 0 between slices that hold it: it is learned as "
        "background there; paint it there, or mark the parts you did not paint 255"
    ]
    labels[10, 2:6, 2:6] = 255  # the liver's part marked unknown: not learned as background, nothing to say
    assert _notes(labels, {0: [5, 10, 15]}, 255, names={1: "liver"}) == []


def test_a_fine_tune_from_two_consecutive_slices_says_so():
    z, y, x = np.indices((16, 24, 24))
    truth = (((z - 8) / 6) ** 2 + ((y - 12) / 8) ** 2 + ((x - 12) / 7) ** 2 <= 1).astype(np.uint8)
    image = Volume((100.0 * truth + np.random.default_rng(0).normal(0, 10, truth.shape)).astype(np.float32))
    annotation = np.zeros_like(truth)
    annotation[7:9] = truth[7:9]
    options = FinetuneOptions(iterations=1, device="cpu", patch_size=(8, 16, 16), batch_size=1, refine=False)
    result = finetune(image, image.with_array(annotation), "unet3d", options)
    assert any(note.startswith("slices 7-8 along axis 0 are painted one after another") for note in result.notes)


def test_a_dense_annotation_gets_no_painting_note():
    """Every slice painted (ordinary training): two lesions twelve slices apart beside an organ were said to be
    'learned as background' between them, and the organ's own end to need slices painted a few apart."""
    from SegNetsLib.core import annotation as ann

    labels = np.zeros((30, 40, 40), np.uint8)
    labels[1:29, 2:38, 10:38] = 2  # an organ on every slice but the outer two
    labels[5:8, 10:15, 3:8] = 1  # a lesion
    labels[20:23, 10:15, 3:8] = 1  # another lesion
    slices = ann.annotated_slices(labels, 255)
    assert ann.is_dense(ann.weight_map(labels, slices, 255))
    assert _notes(labels, slices, 255, {1: "lesion", 2: "organ"}, from_scratch=True) == []
    assert _notes(labels, slices, 255, {1: "lesion", 2: "organ"}, from_scratch=False) == []


def test_an_outline_drawn_and_not_filled_is_named_and_a_canal_inside_a_structure_is_not():
    """An outline drawn and not filled leaves its inside at 0: learned as background (the test CT's spleen drawn as
    outlines on 3 slices gave Dice 0.09, without a word). A smaller enclosed part (a vertebra's canal) is meant."""
    labels = np.zeros((20, 12, 12), np.uint8)
    labels[5, 2:10, 2:10] = 1
    labels[10, 2:10, 2:10] = 1
    labels[10, 5:7, 5:7] = 0  # a canal: 4 voxels inside 60
    labels[15, 2:10, 2:10] = 1
    labels[15, 3:9, 3:9] = 0  # an outline: 36 voxels inside 28
    notes = _notes(labels, {0: [5, 10, 15]}, 255, names={1: "spleen"})
    assert notes == [
        "spleen is painted as an outline on painted slice(s) 15 along axis 0 (36 unpainted voxels inside, 28 "
        "painted): the inside is learned as background; if it belongs to it, paint it (the Draw effect, or "
        "Scissors' Fill inside, fills an outline) or mark it 255"
    ]
    labels[15, 3:9, 3:9] = 2  # another structure inside the first: painted, nothing to say
    assert _notes(labels, {0: [5, 10, 15]}, 255, names={1: "spleen"}) == []
    labels[15, 3:9, 3:9] = 255  # the inside marked unknown
    assert _notes(labels, {0: [5, 10, 15]}, 255, names={1: "spleen"}) == []


def test_a_label_almost_erased_from_a_painted_slice_between_two_that_hold_it_is_named():
    """An erase stroke leaving a few voxels of a structure on a slice makes that slice painted, the rest of the
    structure on it background (the test CT's spleen, 3 painted slices: Dice 0.954 -> 0.863 for 2 voxels left)."""
    labels = _painted((5, 15))
    labels[10, 3, 3] = 1  # 1 voxel left of 16
    notes = _notes(labels, {0: [5, 10, 15]}, 255, names={1: "spleen"})
    assert notes == [
        "spleen holds only 1 voxel(s) on painted slice(s) 10 along axis 0, under a tenth of the painted slices beside "
        "them: the rest of it is learned as background there; paint it whole there, or erase what is left"
    ]
    labels[10, 2:6, 2:4] = 1  # half of it (a structure narrowing): not a leftover
    assert _notes(labels, {0: [5, 10, 15]}, 255, names={1: "spleen"}) == []


def test_a_lone_painted_slice_from_scratch_says_how_far_the_result_reaches():
    """One painted slice: a new network's result stays within 3 slices of it (the test CT's spleen, 30 slices long,
    painted on its middle slice: Dice 0.38, without a word)."""
    labels = _painted((10,))
    (note,) = _notes(labels, {0: [10]}, 255, names={1: "spleen"}, from_scratch=True)
    assert note == (
        "only slice 10 along axis 0 is painted: the result stays on slices 7-13, within 3 slices of it; if the "
        "structure goes on, paint a slice near each of its ends too"
    )
    assert _notes(labels, {0: [10]}, 255, from_scratch=False) == []  # a pretrained model is not limited
    thin = _painted((2,), shape=(5, 8, 8))  # the range holds the whole axis: nothing is cut
    assert _notes(thin, {0: [2]}, 255, from_scratch=True) == []


def test_a_block_of_axial_slices_painted_whole_is_noted_along_the_axial_axis():
    """A rod of 3 x 20 voxels painted on ten consecutive axial slices: the note names those axial slices, not the
    3 coronal rows that would hold the rod's voxels in fewer slices; written whole (the rest unlabeled, 255) and as
    the panel exports a round vessel painted so (0 outside, no unlabeled value)."""
    labels = np.full((20, 40, 40), 255, np.uint8)
    labels[5:15] = 0
    labels[5:15, 18:21, 10:30] = 1
    (note,) = _notes(labels, annotated_slices(labels, 255), 255, from_scratch=True)
    assert note.startswith("slices 5-14 along axis 0 are painted one after another")
    y, x = np.indices((40, 40))
    panel = np.zeros((20, 40, 40), np.uint8)
    panel[5:15] = (y - 20) ** 2 + (x - 20) ** 2 <= 3**2  # 6 voxels across: 7 coronal rows hold it
    (note,) = _notes(panel, annotated_slices(panel, None), None, from_scratch=True)
    assert note.startswith("slices 5-14 along axis 0 are painted one after another")


def test_slices_filled_between_painted_ones_are_noted_with_what_to_fine_tune_from():
    """3D Slicer's Fill between slices fills every slice between those painted: the test CT's spleen painted on slices
    87, 97 and 107 and filled between gave back the filling alone (Dice 0.79 against 0.95 from the three slices), and
    'paint slices a few apart' said nothing the painter had not done."""
    (note,) = _notes(_painted(range(5, 16)), {0: list(range(5, 16))}, 255, from_scratch=True)
    assert note.startswith("slices 5-15 along axis 0 are painted one after another")
    assert "if Fill between slices filled those between the slices you painted, fine-tune from those slices" in note
