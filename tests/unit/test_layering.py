"""The package layering of docs/architecture.md holds: every import of every module is allowed there.

The rule list is read from the document itself ("Layering: which package may import which"), so
the document and the check cannot drift apart. Imports at any depth count (a lazy import inside a
function couples two packages as much as one at the top).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "kontainers"
DOC = ROOT / "docs" / "architecture.md"
HEADING = "## Layering: which package may import which"
EVERY = "every package"


def allowed_imports() -> dict[str, set[str] | None]:
    """unit → the units it may import (None: any), from the document's list."""
    text = DOC.read_text()
    assert HEADING in text, f"{DOC} lost its section {HEADING!r}"
    section = text.split(HEADING, 1)[1].split("\n## ", 1)[0]
    rules: dict[str, set[str] | None] = {}
    for line in section.splitlines():
        found = re.fullmatch(r"- `(\w+)`[^:]*: (.*)", line.strip())
        if not found:
            continue
        unit, targets = found[1], found[2].strip()
        if targets == EVERY:
            rules[unit] = None
        elif targets == "nothing":
            rules[unit] = set()
        else:
            rules[unit] = set(re.findall(r"`(\w+)`", targets))
    assert rules, f"no rules found under {HEADING!r}"
    return rules


def unit_of(module: str) -> str:
    """`kontainers.gateway.app` → `gateway`; `kontainers.kube` → `kube`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out.append((".".join(parts), path))
    return out


def imported(module: str, path: Path) -> set[str]:
    """The kontainers modules `module` imports (relative imports resolved)."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    package = package.removesuffix(".__init__")
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if node.module:
                found.add(target)
            else:  # `from .. import kube`: each name may be a module
                found.update(f"{target}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "kontainers" or name.startswith("kontainers.")}


def test_every_import_follows_the_documented_layering() -> None:
    rules = allowed_imports()
    broken = []
    for module, path in modules():
        unit = unit_of(module)
        if unit in ("kontainers", "__init__"):
            continue
        if unit not in rules:
            broken.append(f"{module}: package `{unit}` has no line in {DOC.name} ({HEADING})")
            continue
        may = rules[unit]
        for target in sorted(imported(module, path)):
            other = unit_of(target)
            if other in (unit, "kontainers", "__name__") or may is None:
                continue  # itself, the package's own __init__ (version, name), or a free unit
            if other not in may:
                broken.append(f"{module} imports {target}: `{unit}` may not import `{other}`")
    assert not broken, "imports that break docs/architecture.md's layering:\n" + "\n".join(broken)


def test_files_knows_no_http_app() -> None:
    """The Files API storage is imported by the gateway, never the other way round."""
    for module, path in modules():
        if unit_of(module) == "files":
            assert not {unit_of(t) for t in imported(module, path)} & {"gateway", "sidecar", "controller"}, module


def test_the_check_sees_a_broken_import(tmp_path: Path) -> None:
    """A module of `api` that imports the gateway is caught (the checker is not vacuous)."""
    fake = tmp_path / "bad.py"
    fake.write_text("def f():\n    from ..gateway import app\n")
    assert unit_of(next(iter(imported("kontainers.api.bad", fake)))) == "gateway"
    assert "gateway" not in allowed_imports()["api"]
