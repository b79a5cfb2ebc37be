"""The gateway's aiohttp application: `/v1` (OpenAI wire), `/openapi.json`, `/healthz`, `/readyz`.

`/metrics` is not among them: `with_metrics_server` serves it on a port of its own
(`GatewaySettings.metrics_port`), since it answers without an API key."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from ..observability import http_metrics_middleware, start_ops_server
from ..resources import names
from . import files_api
from ..settings import FilesSettings, GatewaySettings
from . import container_routes, exec_routes, file_routes, skills_api, store_sweep, uploads_api
from .activity import ActivityRecorder, annotation_writer
from .auth import auth_middleware
from .cluster import Cluster
from .create import ContainerCreator
from ..api.errors import APIError, Handler, error_middleware
from .kube_cluster import KubeCluster
from .openapi import openapi_document
from .request_ids import add_request_id_header, request_id_middleware
from .sidecar import SidecarClient
from .state import ACTIVITY, CLUSTER, CREATOR, SETTINGS, SIDECARS


def create_app(settings: GatewaySettings | None = None, *, cluster: Cluster | None = None,
               files: FilesSettings | None = None) -> web.Application:
    """The gateway app; `cluster` defaults to the real API server named by the settings,
    `files` (the Files API store) to KONTAINERS_FILES_* settings."""
    settings = settings or GatewaySettings()
    cluster = cluster or KubeCluster(settings)
    app = web.Application(
        client_max_size=settings.max_json_bytes,
        middlewares=[request_id_middleware, http_metrics_middleware, error_middleware,
                     readiness_middleware(cluster), auth_middleware(cluster.keys)],
    )
    app[SETTINGS] = settings
    app[CLUSTER] = cluster
    app[CREATOR] = ContainerCreator(cluster, wait_seconds=settings.create_wait_seconds,
                                    retry_window_seconds=settings.retry_window_seconds)
    app[ACTIVITY] = ActivityRecorder(annotation_writer(cluster.annotate_container, names.ANNOTATION_LAST_ACTIVE),
                                     settings.activity_debounce_seconds)
    app[SIDECARS] = SidecarClient(cluster, port=settings.sidecar_port,
                                  connect_timeout=settings.sidecar_connect_timeout,
                                  retry_after=settings.not_ready_retry_after)
    cluster.containers.on_removed(lambda obj: _forget_container(app, obj))
    app.cleanup_ctx.append(_lifecycle)
    app.on_response_prepare.append(add_request_id_header)
    app.router.add_routes(container_routes.routes)
    app.router.add_routes(file_routes.routes)
    exec_routes.setup(app, settings, cluster)  # /v1/containers/{id}/exec
    files_api.setup(app, files)  # /v1/files and its store
    uploads_api.setup(app)  # /v1/uploads, beside the file store
    skills_api.setup(app)  # /v1/skills, beside the file store
    store_sweep.setup(app)  # expired files and unused skill bundles leave the store
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


def with_metrics_server(app: web.Application) -> web.Application:
    """Serve `/metrics` (with `/healthz`, `/readyz`) on `metrics_port` while `app` runs; 0: none."""
    settings = app[SETTINGS]

    async def metrics_server(app: web.Application) -> AsyncIterator[None]:
        runner = await start_ops_server(settings.host, settings.metrics_port, ready=app[CLUSTER].ready)
        yield
        await runner.cleanup()

    if settings.metrics_port:
        app.cleanup_ctx.append(metrics_server)
    return app


def _forget_container(app: web.Application, obj: dict) -> None:
    """A Container left the cache (deleted with kubectl, after expiry, …): drop what is kept for it."""
    app[ACTIVITY].forget(obj["metadata"]["namespace"], obj["metadata"]["name"])
    app[SIDECARS].forget(obj)


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    await app[CLUSTER].start()
    yield
    await app[ACTIVITY].close()
    await app[SIDECARS].close()
    await app[CLUSTER].stop()


def readiness_middleware(cluster: Cluster, prefix: str = "/v1/"):
    """Until the watches have listed once, `/v1` answers 503 (the SDKs retry) instead of wrong 404s."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(prefix) and not cluster.ready():
            raise APIError(503, "The gateway is starting; retry shortly.", type="server_error",
                           headers={"Retry-After": "1"})
        return await handler(request)

    return middleware


async def openapi(_: web.Request) -> web.Response:
    return web.json_response(openapi_document())


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    if request.app[CLUSTER].ready():
        return web.json_response({"status": "ready"})
    return web.json_response({"status": "not ready"}, status=503)
