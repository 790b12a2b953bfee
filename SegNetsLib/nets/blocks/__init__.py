"""Building blocks shared by the networks: padding, concatenation-free decoder convolutions, residual blocks."""
