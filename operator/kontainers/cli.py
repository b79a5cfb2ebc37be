"""`kontainers <command> …`: one console script for every process kind.

Each command lives in its own module and owns its flags; importing lazily keeps
`kontainers sidecar` from loading kopf or the egress proxy.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "cluster": ("kontainers.cluster.launcher", "run the local Kubernetes control plane in the foreground"),
    "dev": ("kontainers.cluster.dev", "run everything locally: control plane, egress proxy, operator, gateway, node agent"),
    "operator": ("kontainers.controller.main", "run the Container operator (kopf)"),
    "gateway": ("kontainers.gateway.main", "run the OpenAI-compatible /v1 gateway"),
    "sidecar": ("kontainers.sidecar.main", "run the files sidecar that owns /mnt/data"),
    "egress": ("kontainers.egress.main", "run the egress proxy enforcing allowlists"),
    "apikey": ("kontainers.gateway.apikeys", "create or revoke gateway API keys"),
    "build": ("kontainers.cluster.build", "build the control plane binaries from pinned Go modules"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: kontainers <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help", "help"}:
        print(usage())
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"kontainers: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
