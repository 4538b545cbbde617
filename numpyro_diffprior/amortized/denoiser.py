"""Conditional denoisers: D(x_n; sigma, observation) = E[x_n | x_n + sigma n, gamma_obs].

A conditional denoiser is an object with three methods (the network's below, the exact Gaussian
oracle's in `testing.conditional`):

- `encode(params, obs, normalizer) -> context`: the per-observation input, computed once per
  observation before the reverse diffusion (a batch of K observations -> leading axis K);
- `__call__(params, x_n (B, D), sigma (B,), context) -> x_hat_n (B, D)` with one context row per
  row of x_n;
- `denoise_prior(params, x_n, sigma)`: the same denoiser given no data (every pixel masked).

`ConditionalNetworkDenoiser` is the U-Net of `nets` with `obs_channels = 4 C`
(`amortized.features`) and the EDM preconditioning of the joint prior
(`diffusion.preconditioning`); like `denoiser.NetworkDenoiser` it holds the configuration, not a
transformed function, so it pickles and equal networks share compiled programs.
`conditional_params` starts a conditional network from a joint prior's weights: the observation
path is zero, so the two agree exactly until training moves it.
"""

from __future__ import annotations

import dataclasses

import jax

from numpyro_diffprior.amortized.features import num_feature_channels, observation_features
from numpyro_diffprior.diffusion.normalization import pack, unpack
from numpyro_diffprior.diffusion.preconditioning import precondition

__all__ = ["ConditionalNetworkDenoiser", "conditional_network_config", "conditional_params"]


@dataclasses.dataclass(frozen=True)
class ConditionalNetworkDenoiser:
    """The conditional U-Net of `network_config` (obs_channels = 4 C) for `preset`, EDM."""

    network_config: object  # nets.NetworkConfig
    preset: object  # presets.Preset
    sigma_data: float = 1.0

    def encode(self, params, obs, normalizer):
        del params
        return observation_features(obs, normalizer.kappa_std)

    def __call__(self, params, x, sigma, context):
        return self._denoise(params, x, sigma, context)

    def denoise_prior(self, params, x, sigma):
        return self._denoise(params, x, sigma, None)

    def _denoise(self, params, x, sigma, context):
        from numpyro_diffprior.denoiser import _transformed_network

        _, net = _transformed_network(self.network_config, self.preset)
        n_params, map_shape = self.preset.n_params, self.preset.map_shape

        def raw_fn(x_in, c_noise):
            theta_in, kappa_in = unpack(x_in, n_params, map_shape)
            return pack(*net(params, theta_in, kappa_in, c_noise, context))

        return precondition(raw_fn, x, sigma, sigma_data=self.sigma_data)


def conditional_network_config(network_config, n_bins: int):
    """The joint prior's network config with the observation channels of `n_bins` bins."""
    return dataclasses.replace(network_config, obs_channels=num_feature_channels(n_bins))


def conditional_params(prior_params, init_params):
    """Conditional-network weights: `init_params` (a fresh conditional init, whose observation
    path is zero) with every weight of the joint prior `prior_params` copied in. ValueError if
    a prior weight has no counterpart of the same shape."""
    out = {module: dict(leaves) for module, leaves in init_params.items()}
    for module, leaves in prior_params.items():
        for name, value in leaves.items():
            target = out.get(module, {}).get(name)
            if target is None or target.shape != value.shape:
                shape = None if target is None else target.shape
                raise ValueError(
                    f"prior weight {module}/{name} {value.shape} has no conditional counterpart "
                    f"(got {shape}): the networks differ in more than the observation path"
                )
            out[module][name] = value
    return jax.tree_util.tree_map(lambda v: v, out)
