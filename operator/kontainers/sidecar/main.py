"""`kontainers sidecar`: serve the container's /mnt/data to the gateway.

The token comes from the environment (KONTAINERS_SIDECAR_TOKEN, set from the per-container Secret)
or from a file (--token-file); never from a flag, which anyone on the node could read in `ps`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from kontainers.api.errors import run_app
from kontainers.observability import setup_logging
from kontainers.settings import SidecarSettings
from kontainers.sidecar.app import SidecarConfig, create_app

log = logging.getLogger("kontainers.sidecar")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kontainers sidecar", description=__doc__.splitlines()[0])
    parser.add_argument("--host", help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8081)")
    parser.add_argument("--root", type=Path, help="directory served as /mnt/data (default /mnt/data)")
    parser.add_argument("--token-file", type=Path, help="file holding the bearer token")
    parser.add_argument("--max-upload-bytes", type=int, help="largest accepted upload")
    parser.add_argument("--display-prefix", help="what file paths start with (default /mnt/data)")
    parser.add_argument("--skills-root", type=Path, help="directory skill bundles unpack into (default /mnt/skills)")
    parser.add_argument("--log-level", help="INFO, DEBUG, …")
    return parser.parse_args(argv)


def load_settings(argv: list[str]) -> SidecarSettings:
    args = parse_args(argv)
    overrides = {key: value for key, value in vars(args).items() if value is not None}
    return SidecarSettings(**overrides)


def read_token(settings: SidecarSettings) -> str:
    if settings.token is not None:
        token = settings.token.get_secret_value()
    elif settings.token_file is not None:
        token = settings.token_file.read_text().strip()
    else:
        token = ""
    if not token:
        raise SystemExit("kontainers sidecar: no token (set KONTAINERS_SIDECAR_TOKEN or --token-file)")
    return token


def main(argv: list[str]) -> int:
    settings = load_settings(argv)
    setup_logging(settings.log_level)
    config = SidecarConfig(
        root=settings.root,
        token=read_token(settings),
        max_upload_bytes=settings.max_upload_bytes,
        display_prefix=settings.display_prefix,
        skills_root=settings.skills_root,
        skills_display_prefix=settings.skills_display_prefix,
    )
    log.info(
        "files sidecar listening",
        extra={"host": settings.host, "port": settings.port, "root": str(settings.root)},
    )
    run_app(create_app(config), host=settings.host, port=settings.port)  # never logs a raw header line
    return 0
