"""Memorization audits after training: extraction, canary exposure, membership inference."""
