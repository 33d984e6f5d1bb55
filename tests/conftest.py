"""Shared fixtures: emulated Hyper-V hosts on loopback, started and stopped by the tests."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from hyperv_backup.simulator import Simulator
from tests.s3_servers import MotoS3, RcloneS3


@pytest.fixture(autouse=True)
def _no_outside_configuration(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The developer's own configuration file and HYPERV_BACKUP_* variables never reach a
    test (the live-host tests' variables excepted)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg-config")))
    for name in list(os.environ):
        if name.startswith("HYPERV_BACKUP_") and not name.startswith("HYPERV_BACKUP_LIVE_"):
            monkeypatch.delenv(name)


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


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    """moto's S3 server on a loopback port, for the whole run (in memory: keep objects small)."""
    with MotoS3() as server:
        yield server


@pytest.fixture(scope="session")
def rclone_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RcloneS3]:
    """``rclone serve s3`` over a temporary folder, for the whole run (ignores conditional
    writes: the server to prove the conditional-write probe against)."""
    with RcloneS3(tmp_path_factory.mktemp("rclone-s3")) as server:
        yield server
