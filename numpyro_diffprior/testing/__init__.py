"""Exact oracles for testing diffusion priors and posterior samplers (docs/design.md §2.7).

Public API: users build `DiffusionPrior`s on these oracles (docs/sampling.md) to check a
sampler against an exact posterior, so they ship with the package (this subpackage is never
imported by the library itself). `gaussian` holds the Gaussian joint, `amplitude` the amplitude
model, `common` their shared pieces.

Two joint priors p(theta, kappa) whose noisy densities p_sigma(x) = p * N(0, sigma^2 I) are known
in closed form, in the package's *normalised* flat coordinates x = [theta_n, kappa_n]:

- **Gaussian joint**: theta_n ~ N(0, I), kappa_n = M theta_n + g, g ~ GRF (a stationary Gaussian
  field, Fourier-diagonal per bin, correlated between bins). Denoiser
  D(x; sigma) = mu + Sigma (Sigma + sigma^2 I)^-1 (x - mu); exact posterior under any linear
  Gaussian observation by Gaussian conditioning.
- **Amplitude**: theta = A ~ LogNormal, kappa_n | A ~ N(0, A^2 K). Non-Gaussian joint; the
  denoiser is a 1-D quadrature over A (Tweedie: E[x | x_sigma]); the exact posterior p(A | y) is a
  1-D integral and kappa | A, y is a Wiener filter.

`gaussian_denoise(oracle, x, sigma)` and `amplitude_denoise(oracle, x, sigma)` have the
`apply_fn(params, x (B, D), sigma (B,))` signature, so an oracle plugs into `DiffusionPrior` in
place of a trained network. Exact posteriors are computed eagerly in float64 NumPy.
"""

from numpyro_diffprior.testing.amplitude import (
    AmplitudeOracle,
    AmplitudePosterior,
    amplitude_denoise,
    amplitude_oracle,
    amplitude_posterior,
    amplitude_whitening,
)
from numpyro_diffprior.testing.common import ks_distance, linear_operator_matrix
from numpyro_diffprior.testing.gaussian import (
    GaussianOracle,
    GaussianPosterior,
    gaussian_denoise,
    gaussian_joint_oracle,
    gaussian_log_density,
    gaussian_oracle_prior,
    gaussian_posterior,
    gaussian_prior_moments,
)

__all__ = [
    "gaussian_oracle_prior",
    "GaussianOracle",
    "AmplitudeOracle",
    "GaussianPosterior",
    "AmplitudePosterior",
    "gaussian_joint_oracle",
    "amplitude_oracle",
    "gaussian_denoise",
    "amplitude_denoise",
    "amplitude_whitening",
    "gaussian_log_density",
    "gaussian_prior_moments",
    "gaussian_posterior",
    "amplitude_posterior",
    "linear_operator_matrix",
    "ks_distance",
]
