"""The MRML bridge: Slicer nodes <-> SegNetsLib data, using Slicer's own MRML classes and no Qt.

Runs inside the Slicer application and under PyPI's ``slicer-core`` (tests, headless batch, SegNets Web).
Every function here must be called on the thread that owns the scene (Slicer's main thread).
"""

from SegNetsLib.mrml.annotation import annotation_from_segmentation
from SegNetsLib.mrml.files import load_volume_node, save_segmentation_node
from SegNetsLib.mrml.hierarchy import place_next_to
from SegNetsLib.mrml.roi import box_from_roi_node, roi_node_from_box
from SegNetsLib.mrml.segmentation import segmentation_from_labelmap
from SegNetsLib.mrml.volumes import labelmap_node_from_volume, volume_from_node, volume_node_from_volume

__all__ = [
    "annotation_from_segmentation",
    "box_from_roi_node",
    "labelmap_node_from_volume",
    "load_volume_node",
    "place_next_to",
    "roi_node_from_box",
    "save_segmentation_node",
    "segmentation_from_labelmap",
    "volume_from_node",
    "volume_node_from_volume",
]
