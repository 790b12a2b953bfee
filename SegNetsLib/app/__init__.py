"""The GUI-free application: segmentation logic used by the Slicer panel and SegNets Web, worker, self-test, demo."""
