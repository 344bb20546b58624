"""The end-to-end world, shared by the end-to-end modules (each test uses its own model names)."""

from collections.abc import Iterator

import pytest

from harness.e2e import World, started_world


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with started_world(tmp_path_factory.mktemp("e2e")) as started:
        yield started
