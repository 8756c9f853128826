"""Fixtures shared by the method tests: the digits original, loaded once per module."""

import pytest

from unlearnkit.training.pipeline import load_run


@pytest.fixture(scope="module")
def digits(digits_run):
    """(the digits run, its model): the original a method test unlearns."""
    run = load_run(digits_run)
    return run, run.load_model()
