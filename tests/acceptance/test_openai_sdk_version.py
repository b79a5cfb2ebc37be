"""The run tests the openai Python SDK its extra pins, so a stale environment cannot pass for another."""

from __future__ import annotations

import openai

from fixtures.openai_sdk import pinned_openai, run_extra


def test_the_sdk_is_the_one_pinned_for_this_run() -> None:
    assert openai.__version__ == pinned_openai(run_extra())
