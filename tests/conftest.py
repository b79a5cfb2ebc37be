"""Shared fixtures: each area owns one module under tests/fixtures/."""

from fixtures.cluster import *  # noqa: F401,F403  (control plane: `cluster`)
from fixtures.operator import *  # noqa: F401,F403  (operator process: `operator`)
from fixtures.gateway import *  # noqa: F401,F403  (gateway, node agent, openai clients)
from fixtures.real_node import *  # noqa: F401,F403  (product stack on the real node: `stack`)
from fixtures.s3 import s3_server  # noqa: F401  (versitygw on loopback, one per module)


def pytest_report_header() -> str:
    from fixtures.openai_sdk import report_header

    return report_header()  # each run names the openai SDK it tests (make test runs two)
