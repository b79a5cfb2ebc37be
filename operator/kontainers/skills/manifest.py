"""What a bundle's SKILL.md says about itself: `name` and `description` of its YAML front matter.

The front matter is read with PyYAML's safe loader and only those two string keys are kept: the
rest is the model's business, not ours. A SKILL.md without front matter (or with one that is not
YAML) is still a valid bundle (inline skills never needed one); its name is then the bundle's
folder and its description empty.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass

import yaml

from kontainers.skills.bundle import SKILL_FILE, SkillBundle, Source, _open

MAX_MANIFEST_BYTES = 64 * 1024  # front matter sits at the top; the rest is never needed here
MAX_NAME = 256  # the Container resource's limits for a skill's name and description
MAX_DESCRIPTION = 4096
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True)
class Manifest:
    name: str
    description: str


def read_manifest(source: Source, bundle: SkillBundle) -> Manifest:
    """The name and description of a validated bundle's SKILL.md."""
    with _open(source) as archive:
        try:
            with archive.open(f"{bundle.folder}/{SKILL_FILE}") as handle:
                text = handle.read(MAX_MANIFEST_BYTES).decode("utf-8", errors="replace")
        except (KeyError, zipfile.BadZipFile):
            text = ""
    fields = front_matter(text)
    name = " ".join(_clean(fields.get("name", "")).split())[:MAX_NAME] or bundle.folder[:MAX_NAME]
    return Manifest(name=name, description=_clean(fields.get("description", ""))[:MAX_DESCRIPTION])


def front_matter(text: str) -> dict[str, str]:
    """The string values of the YAML mapping between a leading `---` line and the next one; none
    when it is absent or not valid YAML (the bundle stays valid: inline skills never needed one)."""
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or lines[0].strip() != "---":
        return {}
    end = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), len(lines))
    try:
        loaded = yaml.safe_load("\n".join(lines[1:end]))
    except yaml.YAMLError:
        return {}
    if not isinstance(loaded, dict):
        return {}
    return {str(k): v for k, v in loaded.items() if isinstance(v, str)}


def _clean(value: str) -> str:
    """Control characters are dropped: names end up in a Kubernetes resource and in replies."""
    return _UNPRINTABLE.sub("", value).strip()
