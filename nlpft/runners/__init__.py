"""Runners: one per command, tying data, tokenization and models into a run."""
