"""The SegNets module's Qt side beyond SegNets.py: dependencies, parameter node and logic, and the widget's
model-library and correction-round controls. A package beside SegNets.py, so Slicer does not take its files for
modules of their own."""
