"""Shared test settings: each test module's compiled programs are freed when it ends.

A test process runs many modules in turn; without this it keeps every program compiled so far
(several GB by the end of the full tier, two such processes side by side), and the examples'
and the demo's worker processes then compete for what memory is left. Programs used again are
read back from the persistent compilation cache (`make test` sets it).
"""

import gc

import jax
import pytest


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    yield
    jax.clear_caches()
    gc.collect()
