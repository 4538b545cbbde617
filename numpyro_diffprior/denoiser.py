"""`NetworkDenoiser`: the picklable ``apply_fn(params, x_n, sigma)`` of a trained network.

It holds the network's configuration (`nets.NetworkConfig`) and preset, not a transformed
function, so a `DiffusionPrior` built on it pickles (worker processes receive it) and priors
with equal networks share compiled programs. The network itself is built on first use
(`nets.make_network`, the only Haiku user), once per (config, preset).
"""

from __future__ import annotations

import dataclasses
import functools

__all__ = ["NetworkDenoiser"]


@dataclasses.dataclass(frozen=True)
class NetworkDenoiser:
    """``apply_fn(params, x_n, sigma) -> x_hat_n`` of a trained network: the U-Net of
    `network_config` for `preset` with the EDM preconditioning (Karras et al. 2022).

    It holds the network's configuration, not a transformed function, so a prior built on it
    pickles (to send it to worker processes) and priors with equal networks share compiled
    programs.
    """

    network_config: object  # nets.NetworkConfig
    preset: object  # presets.Preset
    sigma_data: float

    def __call__(self, params, x, sigma):
        from numpyro_diffprior.diffusion.preconditioning import make_denoise_fn

        _, net = _transformed_network(self.network_config, self.preset)
        fn = make_denoise_fn(
            net, params, self.preset.n_params, self.preset.map_shape, sigma_data=self.sigma_data
        )
        return fn(x, sigma)


@functools.cache
def _transformed_network(network_config, preset):
    from numpyro_diffprior.nets import make_network

    return make_network(network_config, preset)
