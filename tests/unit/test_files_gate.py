"""The operator's delivery gate: pure decisions over Container dicts."""

from __future__ import annotations

from kontainers.resources import delivery_gate as gate
from kontainers.resources import names


def container(spec: dict | None = None, annotation: str | None = None, status: dict | None = None) -> dict:
    meta: dict = {"name": "c", "namespace": "ns"}
    if annotation is not None:
        meta["annotations"] = {names.ANNOTATION_FILES_DELIVERED: annotation}
    return {"metadata": meta, "spec": {"name": "c", **(spec or {})}, "status": status or {}}


WITH_FILES = {"fileIds": ["file-1"]}
WITH_SKILLS = {"skills": [{"type": "inline", "name": "s", "bundle": {"fileId": "skill-1"}}]}


def test_only_containers_with_files_or_skills_wait() -> None:
    assert not gate.awaiting_delivery(container(), "127.66.0.5")
    assert gate.awaiting_delivery(container(WITH_FILES), "127.66.0.5")
    assert gate.awaiting_delivery(container(WITH_SKILLS), "127.66.0.5")
    assert not gate.awaiting_delivery(container(WITH_FILES), None)


def test_a_delivery_counts_only_for_the_pod_it_went_to() -> None:
    assert not gate.awaiting_delivery(container(WITH_FILES, "127.66.0.5"), "127.66.0.5")
    assert gate.awaiting_delivery(container(WITH_FILES, "127.66.0.5"), "127.66.0.9")


def test_delivery_done_needs_the_waiting_status_and_a_matching_marker() -> None:
    waiting = {"status": "pending", "reason": gate.DELIVERING_FILES, "podIP": "127.66.0.5"}
    assert gate.delivery_done(container(WITH_FILES, "127.66.0.5", waiting))
    assert not gate.delivery_done(container(WITH_FILES, None, waiting))
    assert not gate.delivery_done(container(WITH_FILES, "127.66.0.9", waiting))
    assert not gate.delivery_done(container(WITH_FILES, "127.66.0.5", {**waiting, "status": "running"}))
    assert not gate.delivery_done(container(WITH_FILES, "127.66.0.5", {**waiting, "reason": "PodPending"}))


def test_forgetting_removes_only_an_existing_marker() -> None:
    assert gate.forget_delivery_patch(container(WITH_FILES)) is None
    assert gate.forget_delivery_patch(container(WITH_FILES, "127.66.0.5")) == {
        "metadata": {"annotations": {names.ANNOTATION_FILES_DELIVERED: None}}}
