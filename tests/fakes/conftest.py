"""Load the fakes' fixtures for their own self-tests, unless the root conftest already did
(registering the plugin twice would start a second copy of every server)."""

from __future__ import annotations

import pytest

PLUGIN = "tests.fakes.fixtures"


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin(PLUGIN):
        config.pluginmanager.import_plugin(PLUGIN)
