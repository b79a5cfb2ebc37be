"""`skill_reference` entries of a container create: which version of which skill, and its spec entry.

As OpenAI documents it: `version` is a positive integer or `"latest"` (the highest version);
without one, the skill's `default_version`. An unknown skill, another tenant's, or a version the
skill does not have is a 404 naming the parameter; a version that is no number a 400.
"""

from __future__ import annotations

from typing import Any

from kontainers.api.errors import APIError, bad_request, not_found
from kontainers.api.skill import LATEST, version_number
from kontainers.files.skills import SkillNotFound, SkillRecord, SkillStore, VersionRecord


def skill_not_found(skill_id: str, param: str | None = "skill_id") -> APIError:
    return not_found(f"No such Skill object: {skill_id}", param=param)


def version_not_found(skill_id: str, version: str, param: str | None = "version") -> APIError:
    return not_found(f"Skill {skill_id} has no version {version!r}.", param=param)


def pick_version(record: SkillRecord, requested: str | None, *, param: str = "version") -> VersionRecord:
    """The version `requested` names: a number, `latest`, or (None) the default."""
    if requested is None:
        number: int | None = record.default_version
    elif requested == LATEST:
        number = record.latest_version
    else:
        number = version_number(requested)
        if number is None:
            raise bad_request(f"Invalid value for '{param}': {requested!r} is not a positive integer or "
                              f"'{LATEST}'.", param=param, code="invalid_value")
    found = record.version(number) if number else None
    if found is None:
        raise version_not_found(record.id, str(requested if requested is not None else number), param)
    return found


async def resolve_reference(store: SkillStore | None, tenant: str, skill: Any, param: str) -> tuple[str, VersionRecord]:
    """(skill id, version) of a `skill_reference` of the create params at `param` (`skills[i]`)."""
    if store is None:
        raise skill_not_found(skill.skill_id, f"{param}.skill_id")
    try:
        record = await store.get(tenant, skill.skill_id)
    except SkillNotFound:
        raise skill_not_found(skill.skill_id, f"{param}.skill_id") from None
    return record.id, pick_version(record, skill.version, param=f"{param}.version")


def reference_entry(skill_id: str, version: VersionRecord) -> dict[str, Any]:
    """The Container's `spec.skills` entry: the reference, resolved to a version and pinned to its
    bundle (delivered like an inline skill's)."""
    return {"type": "skill_reference", "skillId": skill_id, "version": str(version.version), "name": version.name,
            "description": version.description, "bundle": {"fileId": version.bundle_id, "sha256": version.sha256}}
