"""Errors that neurofit reports to the user as one clear line (the CLI never shows a traceback for these)."""

from __future__ import annotations


class NeurofitError(Exception):
    """Base class: a problem with the user's input, named with the file/recording and what is wrong."""


class DataError(NeurofitError):
    """A store, recording or source file is missing, malformed or inconsistent."""


class ConfigError(NeurofitError):
    """A configuration names an unknown component or has an invalid value."""


class TrainingError(NeurofitError):
    """Training cannot go on (a non-finite loss or weights); the run keeps its last good checkpoint."""
