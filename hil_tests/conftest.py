"""Loads the rig's pytest plugin (hil_tests/plugin.py) for the scenarios in this folder."""

from hil_tests.plugin import (  # noqa: F401 (pytest finds hooks and fixtures by name)
    pytest_addoption,
    pytest_configure,
    pytest_runtest_makereport,
    rig,
    rig_databases,
    rig_file,
)
