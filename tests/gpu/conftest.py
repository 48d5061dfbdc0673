"""Every test here is marked `gpu`: `pytest -m "not gpu"` leaves them out on a CPU box, where they
skip anyway (tests/support/gpu_env.py)."""
import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/gpu/" in item.nodeid:
            item.add_marker(pytest.mark.gpu)
