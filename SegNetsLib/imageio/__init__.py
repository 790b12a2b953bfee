"""Reading and writing volumes (SimpleITK) and segmentations (.seg.nrrd, labelmaps)."""
