"""Fixtures of the simulator tests (helpers: simulator_toys.py)."""

import pytest
from simulator_toys import make_toy_emulator


@pytest.fixture(scope="session")
def toy_emulator():
    return make_toy_emulator("tiny")


@pytest.fixture(scope="session")
def toy_emulator_coarse():
    return make_toy_emulator("lsst-y10-coarse")
