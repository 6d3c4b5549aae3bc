"""Experiments: statistics and the A/B report."""
