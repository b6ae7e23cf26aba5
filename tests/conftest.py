import pytest

from perfmodel import catalog


@pytest.fixture
def v4():
    return catalog.load_hardware("tpu-v4")


@pytest.fixture
def hw():
    return catalog.load_hardware
