"""Shared fixtures: emulated Hyper-V hosts on loopback, started and stopped by the tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from hyperv_backup.simulator import Simulator


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    """The default scenario over HTTPS + Basic, shared by a module's read-only tests."""
    with Simulator() as sim:
        yield sim


@pytest.fixture
def make_simulator() -> Iterator[Callable[..., Simulator]]:
    """Start simulators with a custom scenario; all stopped at the end of the test."""
    with ExitStack() as stack:

        def start(scenario: Any = None, **kwargs: Any) -> Simulator:
            return stack.enter_context(Simulator(scenario, **kwargs))

        yield start
