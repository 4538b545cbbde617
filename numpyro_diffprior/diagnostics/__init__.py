"""Diagnostics: power spectra (`power`), calibration (`calibration`: TARP, MIRA), posterior
comparison (`compare`), figures (`plots`, the only matplotlib user) and reports (`report`).

Submodules are imported explicitly (``from numpyro_diffprior.diagnostics import calibration``)
so that importing the package does not pull in matplotlib.
"""
