"""Generate the Container CRD from the pydantic models in `model.py`.

    python -m kontainers.resources.crd            # (re)write crds/containers.kontainers.dev.yaml
    python -m kontainers.resources.crd --check    # exit 1 if the file differs from the models

The pydantic JSON Schema is folded into a Kubernetes *structural* schema: references inlined,
`Optional` unions collapsed, titles dropped, every property typed and described.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml

from . import names
from .model import ContainerResource

DEFAULT_PATH = Path(__file__).resolve().parents[3] / "crds" / f"{names.CRD_NAME}.yaml"
HEADER = "# Generated from kontainers/resources/model.py by `python -m kontainers.resources.crd`. Do not edit.\n"

# JSON Schema keywords that carry over to a structural schema unchanged.
_KEPT = {
    "type", "description", "default", "enum", "format", "pattern", "minimum", "maximum",
    "minLength", "maxLength", "minItems", "maxItems", "required",
    "x-kubernetes-validations", "x-kubernetes-list-type", "x-kubernetes-list-map-keys",
}
_DROPPED = {"title", "additionalProperties"}


class SchemaError(ValueError):
    """The models use a construct that has no structural-schema equivalent."""


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Inline `$ref` / single-item `allOf`, keeping the referencing node's own keywords."""
    node = dict(node)
    if "allOf" in node and len(node["allOf"]) == 1:
        node.update(_resolve(node.pop("allOf")[0], defs) | {k: v for k, v in node.items() if k != "allOf"})
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        merged = copy.deepcopy(target)
        # The field's own description and default win over the referenced model's docstring.
        merged.update(node)
        node = merged
    return node


def _structural(node: dict[str, Any], defs: dict[str, Any], path: str) -> dict[str, Any]:
    node = _resolve(node, defs)
    if "anyOf" in node:  # Optional[X] → X: absence already means "unset"
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        if len(options) != 1:
            raise SchemaError(f"{path}: unions are not structural; use one model with a type field")
        if "default" in node and node["default"] is None:
            del node["default"]
        node = _resolve(options[0], defs) | node
    if "const" in node:
        node["enum"] = [node.pop("const")]
        node.setdefault("type", "string")
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED or key in ("properties", "items", "$defs"):
            continue
        if key not in _KEPT:
            raise SchemaError(f"{path}: keyword {key!r} has no structural equivalent")
        out[key] = value
    if "type" not in out:
        raise SchemaError(f"{path}: every node of a structural schema needs a type")
    if not out.get("description"):
        raise SchemaError(f"{path}: needs a description (a docstring) for `kubectl explain`")
    if "properties" in node:
        out["properties"] = {
            name: _structural(child, defs, f"{path}.{name}") for name, child in node["properties"].items()
        }
    if "items" in node:
        items = _resolve(node["items"], defs)
        items.setdefault("description", f"One entry of {path.rsplit('.', 1)[-1]}.")
        out["items"] = _structural(items, defs, f"{path}[]")
    if "description" in out:  # docstrings wrap lines; `kubectl explain` re-wraps them anyway
        out["description"] = " ".join(out["description"].split())
    # Type and description first, so the generated file reads like a hand-written one.
    return {k: out[k] for k in sorted(out, key=lambda k: (k != "description", k != "type", k in ("properties", "items")))}


def openapi_schema() -> dict[str, Any]:
    """The openAPIV3Schema of the Container resource."""
    raw = ContainerResource.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    schema = _structural(raw, defs, "Container")
    schema["properties"] = {
        "apiVersion": {"type": "string", "description": "Versioned schema of this object (kontainers.dev/v1alpha1)."},
        "kind": {"type": "string", "description": "Kind of this object: Container."},
        "metadata": {"type": "object"},  # the API server forbids anything more here
        **schema["properties"],
    }
    return schema


PRINTER_COLUMNS = [
    {"name": "ID", "type": "string", "jsonPath": ".status.id", "description": "OpenAI container id."},
    {"name": "Display-Name", "type": "string", "jsonPath": ".spec.name",
     "description": "Display name (spec.name); kubectl already shows the object name as NAME."},
    {"name": "Status", "type": "string", "jsonPath": ".status.status", "description": "OpenAI-facing status."},
    {"name": "Memory", "type": "string", "jsonPath": ".spec.memoryLimit", "description": "Memory limit."},
    {"name": "Network", "type": "string", "jsonPath": ".spec.networkPolicy.type", "description": "Egress policy."},
    {"name": "Start", "type": "string", "jsonPath": ".status.start",
     "description": "warm: the pod came from the warm pool; cold: made for this Container."},
    {"name": "Last-Active", "type": "date", "jsonPath": ".status.lastActiveAt", "description": "Last activity."},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def build_crd() -> dict[str, Any]:
    """The CustomResourceDefinition object (also applied in-process by `kontainers dev`)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": names.CRD_NAME,
            "labels": {"app.kubernetes.io/name": "kontainers", "app.kubernetes.io/part-of": "kontainers"},
        },
        "spec": {
            "group": names.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": names.KIND,
                "listKind": f"{names.KIND}List",
                "plural": names.PLURAL,
                "singular": names.SINGULAR,
                "shortNames": [names.SHORT_NAME],
                "categories": ["kontainers"],
            },
            "versions": [{
                "name": names.VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": PRINTER_COLUMNS,
                "schema": {"openAPIV3Schema": openapi_schema()},
            }],
        },
    }


def render() -> str:
    return HEADER + yaml.safe_dump(build_crd(), sort_keys=False, width=100, allow_unicode=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kontainers.resources.crd", description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_PATH, help="CRD file (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is not what the models produce")
    args = parser.parse_args(argv)
    wanted = render()
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != wanted:
            print(f"{args.output} is out of date: run python -m kontainers.resources.crd", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(wanted)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
