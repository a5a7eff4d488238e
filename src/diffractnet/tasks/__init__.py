"""Tasks: labels, losses, metrics and prediction post-processing, one module per task."""
