"""Render the Helm chart with its default values into plain YAML for `kubectl apply -f manifests/`.

    python manifests/render.py           # rewrite manifests/kontainers.yaml
    python manifests/render.py --check   # exit 1 when it is out of date with the chart

The output is `helm template` of charts/kontainers (release `kontainers`, namespace `kontainers`),
preceded by the Namespace itself. The Kubernetes version is pinned so the output does not depend
on the cluster or on how helm was built. helm comes from the local control plane's bin dir
(`python -m kontainers.cluster.build`), else from PATH.
"""

from __future__ import annotations

import argparse
import difflib
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "kontainers"
OUTPUT = REPO / "manifests" / "kontainers.yaml"
RELEASE = "kontainers"
NAMESPACE = "kontainers"

HEADER = f"""\
# kontainers, rendered from charts/kontainers with its default values by manifests/render.py.
# Do not edit: change the chart and run `python manifests/render.py`.
#
#   kubectl apply --server-side -f manifests/
#
# Everything lives in namespace `{NAMESPACE}`; the Container CRD and kopf's peering CRDs are included.
---
apiVersion: v1
kind: Namespace
metadata:
  name: {NAMESPACE}
  labels:
    app.kubernetes.io/part-of: kontainers
    pod-security.kubernetes.io/enforce: restricted
"""


def helm_binary() -> str:
    try:
        from kontainers.cluster.build import bin_dir

        candidate = bin_dir() / "helm"
        if candidate.is_file():
            return str(candidate)
    except Exception:  # the package or Go may be missing; PATH is the fallback
        pass
    found = shutil.which("helm")
    if not found:
        sys.exit("helm not found: run `python -m kontainers.cluster.build` or install helm")
    return found


def kube_version() -> str:
    from kontainers.cluster.pins import KUBERNETES_VERSION

    return KUBERNETES_VERSION


def render(helm: str | None = None) -> str:
    rendered = subprocess.run(
        [helm or helm_binary(), "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
         "--kube-version", kube_version()],
        check=True, capture_output=True, text=True,
    ).stdout
    return HEADER + rendered.lstrip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 when the file is out of date")
    args = parser.parse_args(argv)
    fresh = render()
    if args.check:
        current = OUTPUT.read_text() if OUTPUT.exists() else ""
        if current != fresh:
            diff = difflib.unified_diff(current.splitlines(), fresh.splitlines(), str(OUTPUT), "rendered", lineterm="")
            print("\n".join(list(diff)[:60]), file=sys.stderr)
            print(f"{OUTPUT.relative_to(REPO)} is out of date: run `python manifests/render.py`", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(fresh)
    print(f"wrote {OUTPUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
