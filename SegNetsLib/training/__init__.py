"""Training from labelled datasets: dataset.json, patch sampling, schedules, validation, checkpoints."""
