"""The official `openai` npm package (pinned in package.json) runs the short flow against the gateway."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster

HERE = Path(__file__).parent
STEPS = ["create", "retrieve", "list", "upload", "list_files", "download", "delete_file", "errors", "delete"]


def node_and_sdk() -> str:
    """The node binary, with the pinned SDK installed from package-lock.json (`npm ci`) if needed."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "Node.js 20+ and npm are needed for the Node SDK acceptance test"
    major = int(subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout[1:].split(".")[0])
    assert major >= 20, f"Node.js 20+ is needed, found {major}"
    pinned = json.loads((HERE / "package.json").read_text())["dependencies"]["openai"]
    installed = HERE / "node_modules" / "openai" / "package.json"
    if not installed.exists() or json.loads(installed.read_text())["version"] != pinned:
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    return node


def test_the_node_sdk_runs_the_containers_flow(gateway, tenant, gateway_logs):
    node = node_and_sdk()
    env = {**os.environ, "OPENAI_BASE_URL": gateway.base_url, "OPENAI_API_KEY": tenant.api_key}
    done = subprocess.run([node, "flow.mjs"], cwd=HERE, env=env, capture_output=True, text=True, timeout=600)
    output = f"{done.stdout}\n{done.stderr}"
    assert done.returncode == 0, output
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary == {"ok": True, "sdk": "openai-node", "steps": STEPS}, output
    steps = {line["step"]: line["value"] for line in map(json.loads, done.stdout.strip().splitlines()[:-1])}
    assert steps["upload"]["bytes"] == steps["download"]["bytes"] == 3 * 1024 * 1024 + 17
    assert tenant.api_key not in output
