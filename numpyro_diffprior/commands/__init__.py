"""CLI sub-commands; see `numpyro_diffprior.cli`."""
