"""Fixtures of the sampler tests (helpers: infer_cases.py)."""

import pytest
from infer_cases import make_amplitude_case, make_gaussian_case


@pytest.fixture(scope="session")
def gaussian_case():
    return make_gaussian_case()


@pytest.fixture(scope="session")
def amplitude_case():
    return make_amplitude_case()
