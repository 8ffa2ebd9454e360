"""What several test modules share: builders of small inputs, the workflow runner, loopback
servers. Test modules import from here (and get fixtures from the conftest.py files), never from
each other (tests/test_suite_layout.py)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The checkout: the workflow, its configs and the reference tables."""
