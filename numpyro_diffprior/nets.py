"""The joint (theta, kappa) denoiser network F: the only module that imports Haiku.

A U-Net over the C-channel map (GroupNorm, residual blocks, periodic 3x3 convolutions, average
pooling / nearest upsampling) in the style of the EDM/DDPM++ networks (Karras et al. 2022;
Song et al. 2021), with a Fourier-feature embedding of c_noise and an MLP embedding of the
(c_in-scaled) noisy theta, added together and injected into every residual block as a
FiLM scale/shift. A theta head reads the globally pooled bottleneck features together with the
embedding and returns F_theta. Outputs are zero-initialised so that D = c_skip x at init.
A conditional (amortised) network (`obs_channels > 0`) also reads observation feature maps
(`amortized.features`): a periodic conv `obs_in` added to `conv_in`'s output and a linear map
`obs_emb` of their band powers added to the embedding, both zero-initialised, so that a
conditional network carrying a prior's weights (`amortized.denoiser.conditional_params`) equals
that prior exactly until it is trained. `hk.transform` happens once, in `make_network`;
everything downstream sees pure functions.
"""

from __future__ import annotations

import dataclasses
import json

import haiku as hk
import jax
import jax.numpy as jnp

__all__ = ["NetworkConfig", "make_network", "count_params"]


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """Hyper-parameters of the joint U-Net.

    channels: base width; channel_mult: width multiplier per resolution level (len = levels);
    num_blocks: residual blocks per level; emb_dim: sigma/theta embedding width;
    num_groups: GroupNorm groups; theta_hidden: width of the theta MLPs;
    obs_channels: observation feature channels of a conditional (amortised) network
    (`amortized.features`: 4 per bin); 0 for the joint prior.
    """

    channels: int = 16
    channel_mult: tuple[int, ...] = (1, 2, 4)
    num_blocks: int = 1
    emb_dim: int = 128
    num_groups: int = 8
    theta_hidden: int = 128
    fourier_scale: float = 16.0
    obs_channels: int = 0

    def __post_init__(self):
        if self.channels < 1 or self.emb_dim < 1 or self.num_blocks < 1:
            raise ValueError("channels, emb_dim and num_blocks must be positive")
        if not self.channel_mult:
            raise ValueError("channel_mult needs at least one level")
        for m in self.channel_mult:
            if (self.channels * m) % self.num_groups:
                raise ValueError(
                    f"channels*mult={self.channels * m} not divisible by "
                    f"num_groups={self.num_groups}"
                )
        if self.obs_channels < 0:
            raise ValueError(f"obs_channels must be >= 0, got {self.obs_channels}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["channel_mult"] = list(self.channel_mult)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> NetworkConfig:
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown NetworkConfig fields: {sorted(unknown)}")
        d = dict(d)
        if "channel_mult" in d:
            d["channel_mult"] = tuple(d["channel_mult"])
        return cls(**d)

    @classmethod
    def from_json(cls, s: str) -> NetworkConfig:
        return cls.from_dict(json.loads(s))


def _periodic_conv(x, channels, kernel=3, name=None, zero_init=False):
    """3x3 convolution with wrap-around padding (maps are periodic), NHWC."""
    p = kernel // 2
    x = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="wrap")
    w_init = hk.initializers.Constant(0.0) if zero_init else None
    return hk.Conv2D(channels, kernel, padding="VALID", w_init=w_init, name=name)(x)


def _norm(x, groups):
    return hk.GroupNorm(groups, eps=1e-5)(x)


class _ResBlock(hk.Module):
    def __init__(self, channels, groups, name=None):
        super().__init__(name=name)
        self.channels, self.groups = channels, groups

    def __call__(self, x, emb):
        h = _periodic_conv(jax.nn.silu(_norm(x, self.groups)), self.channels)
        scale, shift = jnp.split(hk.Linear(2 * self.channels)(emb), 2, axis=-1)
        h = _norm(h, self.groups) * (1 + scale[:, None, None, :]) + shift[:, None, None, :]
        h = _periodic_conv(jax.nn.silu(h), self.channels, zero_init=True)
        if x.shape[-1] != self.channels:
            x = hk.Conv2D(self.channels, 1, name="skip")(x)
        return (x + h) * 2**-0.5


def _embedding(theta_in, power_stats, c_noise, cfg, obs_stats=None):
    half = cfg.emb_dim // 4
    # fixed log-spaced Fourier frequencies (cycles per unit c_noise), 0.1 ... fourier_scale
    freqs = jnp.logspace(-1.0, jnp.log10(cfg.fourier_scale), half)
    arg = 2 * jnp.pi * c_noise[:, None] * freqs[None, :]
    e_sigma = jnp.concatenate([jnp.cos(arg), jnp.sin(arg)], axis=-1)
    e_sigma = hk.nets.MLP([cfg.emb_dim, cfg.emb_dim], activation=jax.nn.silu, name="sigma_mlp")(
        e_sigma
    )
    e_theta = hk.nets.MLP(
        [cfg.theta_hidden, cfg.emb_dim], activation=jax.nn.silu, name="theta_mlp"
    )(jnp.concatenate([theta_in, power_stats], axis=-1))
    pre = e_sigma + e_theta
    if obs_stats is not None:  # zero-initialised: exactly the prior's embedding at init
        zero = hk.initializers.Constant(0.0)
        pre = pre + hk.Linear(cfg.emb_dim, w_init=zero, name="obs_emb")(obs_stats)
    return jax.nn.silu(pre)


def _power_stats(x, levels):
    """log mean square of the input map per bin at each pooling scale, (B, C * levels).

    GroupNorm removes each sample's amplitude from the residual branches, yet the map
    amplitude (~sigma_8) is the main information on theta: these band-power-like summaries
    give it to the embedding and the theta head directly.
    """
    stats = []
    for _ in range(levels):
        stats.append(jnp.log(jnp.mean(x**2, axis=(1, 2)) + 1e-4))
        x = hk.avg_pool(x, (1, 2, 2, 1), (1, 2, 2, 1), padding="VALID")
    return jnp.concatenate(stats, axis=-1)


def _forward(cfg: NetworkConfig, theta_in, kappa_in, c_noise, obs_in=None):
    x = jnp.transpose(kappa_in, (0, 2, 3, 1))  # NCHW -> NHWC
    levels = len(cfg.channel_mult)
    obs = obs_stats = None
    if cfg.obs_channels:
        if obs_in is None:  # no observation: all feature maps 0 (an empty, fully masked field)
            obs_in = jnp.zeros(x.shape[:1] + (cfg.obs_channels,) + x.shape[1:3], x.dtype)
        obs = jnp.transpose(obs_in, (0, 2, 3, 1))
        obs_stats = _power_stats(obs, levels)
    emb = _embedding(theta_in, _power_stats(x, levels), c_noise, cfg, obs_stats)
    n_bins = x.shape[-1]
    h = _periodic_conv(x, cfg.channels, name="conv_in")
    if obs is not None:
        h = h + _periodic_conv(obs, cfg.channels, zero_init=True, name="obs_in")
    skips = [h]
    for lvl, mult in enumerate(cfg.channel_mult):
        for _ in range(cfg.num_blocks):
            h = _ResBlock(cfg.channels * mult, cfg.num_groups)(h, emb)
            skips.append(h)
        if lvl < levels - 1:
            h = hk.avg_pool(h, (1, 2, 2, 1), (1, 2, 2, 1), padding="VALID")
            skips.append(h)
    h = _ResBlock(cfg.channels * cfg.channel_mult[-1], cfg.num_groups, name="mid")(h, emb)

    pooled = jnp.concatenate(
        [jnp.mean(h, axis=(1, 2)), jnp.log(jnp.mean(h**2, axis=(1, 2)) + 1e-4), emb], axis=-1
    )
    F_theta = hk.nets.MLP([cfg.theta_hidden, cfg.theta_hidden], activation=jax.nn.silu)(pooled)
    F_theta = hk.Linear(theta_in.shape[-1], w_init=hk.initializers.Constant(0.0), name="theta_out")(
        jax.nn.silu(F_theta)
    )

    for lvl, mult in reversed(list(enumerate(cfg.channel_mult))):
        for _ in range(cfg.num_blocks + 1):
            h = jnp.concatenate([h, skips.pop()], axis=-1)
            h = _ResBlock(cfg.channels * mult, cfg.num_groups)(h, emb)
        if lvl > 0:
            b, ny, nx, c = h.shape
            h = jax.image.resize(h, (b, 2 * ny, 2 * nx, c), method="nearest")
    h = jax.nn.silu(_norm(h, cfg.num_groups))
    F_kappa = _periodic_conv(h, n_bins, zero_init=True, name="conv_out")
    return F_theta, jnp.transpose(F_kappa, (0, 3, 1, 2))


def make_network(config: NetworkConfig, preset):
    """Transform the network once -> (init_fn, apply_fn).

    init_fn(rng_key) -> params;
    apply_fn(params, theta_in (B, P), kappa_in (B, C, N, N), c_noise (B,)[, obs_in]) ->
    (F_theta, F_kappa); obs_in (B, obs_channels, N, N) for a conditional network (None: all 0).
    """
    n_params, map_shape = preset.n_params, tuple(preset.map_shape)
    levels = len(config.channel_mult)
    if preset.npix % 2 ** (levels - 1):
        raise ValueError(f"npix={preset.npix} not divisible by 2^(levels-1)={2 ** (levels - 1)}")
    obs_in_shape = (1, config.obs_channels) + map_shape[1:] if config.obs_channels else None
    net = hk.without_apply_rng(hk.transform(lambda t, k, c, o=None: _forward(config, t, k, c, o)))

    def init_fn(rng_key):
        # Haiku's initialisers draw through an 'rbg' key derived from rng_key: same
        # distributions, but XLA compiles it several times faster than threefry.
        key = jax.random.wrap_key_data(jax.random.bits(rng_key, (4,), jnp.uint32), impl="rbg")
        theta = jnp.zeros((1, n_params))
        kappa = jnp.zeros((1,) + map_shape)
        obs = jnp.zeros(obs_in_shape) if obs_in_shape else None
        return net.init(key, theta, kappa, jnp.zeros((1,)), obs)

    def apply_fn(params, theta_in, kappa_in, c_noise, obs_in=None):
        return net.apply(params, theta_in, kappa_in, c_noise, obs_in)

    return init_fn, apply_fn


def count_params(params) -> int:
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
