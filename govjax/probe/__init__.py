"""The in-training memorization probe: per-example statistics and adaptive depth."""
