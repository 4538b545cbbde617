"""Diverged samplers are reported, never silently returned as a posterior."""

import warnings

import numpy as np
import pytest

from numpyro_diffprior.infer.runner import DIVERGENCE_THRESHOLD, _warn_if_diverged


def test_warns_when_draws_leave_the_prior():
    with pytest.warns(RuntimeWarning, match="50% of the draws"):
        _warn_if_diverged(np.array([0.5, DIVERGENCE_THRESHOLD + 1.0]), "diffusion")


def test_silent_for_draws_inside_the_prior():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_if_diverged(np.array([0.1, 2.0, DIVERGENCE_THRESHOLD - 0.1]), "langevin")
