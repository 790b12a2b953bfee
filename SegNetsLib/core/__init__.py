"""Foundation with no torch: errors, constants, atomic writes, progress and cancel, Volume, annotated slices, box geometry."""
