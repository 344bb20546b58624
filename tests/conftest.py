"""The end-to-end world, shared by the end-to-end modules (each test uses its own model names), and
the two markers: `pytest -m unit` runs in seconds, `pytest -m end_to_end` starts real processes."""

import gc
from collections.abc import Iterator

import pytest

from harness.e2e import World, started_world


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules named test_end_to_end_* are end-to-end; another module that starts processes says so
    with `pytestmark = pytest.mark.end_to_end`; every other test is a unit test."""
    for item in items:
        if item.path.name.startswith("test_end_to_end"):
            item.add_marker(pytest.mark.end_to_end)
        elif item.get_closest_marker("end_to_end") is None:
            item.add_marker(pytest.mark.unit)


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with started_world(tmp_path_factory.mktemp("e2e")) as started:
        yield started


@pytest.fixture(autouse=True)
def collectable_again() -> Iterator[None]:
    """The addon's `running` freezes what exists (genai_gc_freeze), here the test process's objects:
    each test gives them back to the garbage collector."""
    yield
    gc.unfreeze()
