"""SegNetsLib: deep-learning segmentation of 3D medical volumes, without Qt.

The library behind the SegNets 3D Slicer module, the ``segnets`` command line and SegNets Web.
"""

__version__ = "0.1.0"
