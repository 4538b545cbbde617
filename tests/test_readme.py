"""The README's ```python blocks run as written, in order, in one namespace.

Sizes only are changed, by the textual substitutions in `SIZES` (each must occur in the README,
so a rewrite of the block shows up here): the README's 64 draws of 64 reverse steps on
lsst-y10-coarse (about 5 min on 2 CPU cores) become 2 draws of 8 steps, in one process. Marked
slow: loading the shipped prior and compiling the sampler take most of a minute on 2 cores.
"""

from __future__ import annotations

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"

SIZES = {
    "IIDSampler(sampler, 64)": "IIDSampler(sampler, 2, progress_bar=False)",
    "DiffusionPosteriorSampler.for_shipped_network(model)": (
        "DiffusionPosteriorSampler.for_shipped_network(model, num_steps=8)"
    ),
}


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_readme_has_python_blocks_and_the_substitutions_apply():
    blocks = python_blocks(README.read_text())
    assert blocks, "no ```python block in README.md"
    joined = "\n".join(blocks)
    for old in SIZES:
        assert old in joined, f"README no longer contains {old!r}: update SIZES"


@pytest.mark.slow
def test_readme_python_blocks_run():
    namespace = {"__name__": "__readme__"}
    for i, block in enumerate(python_blocks(README.read_text())):
        for old, new in SIZES.items():
            block = block.replace(old, new)
        exec(compile(block, f"README.md python block {i}", "exec"), namespace)
    idata = namespace["idata"]
    assert idata.posterior["theta"].shape[-1] == 2
    assert idata.posterior["kappa"].shape[-3:] == (5, 32, 32)
