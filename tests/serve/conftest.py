"""Fixtures of the serve tests."""

import pytest

from mlmtune.serve.app import create_app


@pytest.fixture(scope="module")
def single_app(tiny_bert):
    """The app of tiny_bert alone (no --compare)."""
    return create_app(tiny_bert)
