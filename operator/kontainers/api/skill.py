"""Wire objects of the Skills API, as openai-python's `Skill`, `SkillVersion` and their params expect.

A Skill is a named bundle (a zip with one top-level folder holding SKILL.md) kept in numbered,
immutable versions ("1", "2", …); `default_version` is what a `skill_reference` without a version
gets, `latest_version` what `"latest"` gets (`openai.types.skill`, `openai.types.skills`).
"""

from __future__ import annotations

import re
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

SKILL_ID_PREFIX = "skill_"
SKILL_VERSION_ID_PREFIX = "skillver_"
LATEST = "latest"
_VERSION_NUMBER = re.compile(r"^[1-9][0-9]{0,17}$")


def version_number(value: str) -> int | None:
    """The number of a version string ("3" → 3), None when it is not a positive integer."""
    return int(value) if isinstance(value, str) and _VERSION_NUMBER.match(value) else None


class _StoredVersion(Protocol):
    id: str
    version: int
    name: str
    description: str
    created_at: int


class _StoredSkill(Protocol):
    id: str
    created_at: int
    default_version: int
    latest_version: int

    def version(self, number: int) -> _StoredVersion | None: ...


class Skill(BaseModel):
    """A skill: its name and description are those of its default version's SKILL.md."""

    id: str = Field(description="`skill_…`; usable as `skill_id` of a container's `skill_reference`.")
    object: Literal["skill"] = "skill"
    created_at: int = Field(description="Unix seconds of the create.")
    default_version: str = Field(description="The version a `skill_reference` without `version` gets.")
    latest_version: str = Field(description="The highest version number (what `version: \"latest\"` gets).")
    name: str = Field(description="`name` of the default version's SKILL.md front matter (else its folder).")
    description: str = Field(description="`description` of the default version's SKILL.md front matter.")

    @classmethod
    def of(cls, record: _StoredSkill) -> "Skill":
        default = record.version(record.default_version)
        return cls(id=record.id, created_at=record.created_at, default_version=str(record.default_version),
                   latest_version=str(record.latest_version), name=default.name if default else "",
                   description=default.description if default else "")


class SkillList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Skill]
    first_id: str | None
    last_id: str | None
    has_more: bool


class DeletedSkill(BaseModel):
    id: str
    object: Literal["skill.deleted"] = "skill.deleted"
    deleted: bool = True


class SkillUpdateParams(BaseModel):
    """`POST /v1/skills/{skill_id}`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    default_version: str = Field(min_length=1, max_length=20, description="An existing version number.")


class SkillVersion(BaseModel):
    """One immutable version of a skill."""

    id: str = Field(description="`skillver_…`.")
    object: Literal["skill.version"] = "skill.version"
    created_at: int
    skill_id: str
    version: str = Field(description="The version number, as a string.")
    name: str = Field(description="`name` of this version's SKILL.md front matter (else its folder).")
    description: str = Field(description="`description` of this version's SKILL.md front matter.")

    @classmethod
    def of(cls, skill_id: str, record: _StoredVersion) -> "SkillVersion":
        return cls(id=record.id, created_at=record.created_at, skill_id=skill_id, version=str(record.version),
                   name=record.name, description=record.description)


class SkillVersionList(BaseModel):
    object: Literal["list"] = "list"
    data: list[SkillVersion]
    first_id: str | None
    last_id: str | None
    has_more: bool


class DeletedSkillVersion(BaseModel):
    id: str = Field(description="The deleted version's id (`skillver_…`).")
    object: Literal["skill.version.deleted"] = "skill.version.deleted"
    deleted: bool = True
    version: str
