"""Where models run: devices, fast CPU convolutions, distributed training helpers."""
