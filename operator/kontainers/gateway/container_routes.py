"""`/v1/containers`: create, list, retrieve, delete."""

from __future__ import annotations

from aiohttp import web

from ..api.container import ContainerDeleted
from ..api.container_create import ContainerCreateParams
from ..api.pagination import ListParams, UnknownCursor
from .file_inputs import check_create_inputs
from .files_api import FILE_STORE
from .skills_api import SKILL_STORE
from . import reply_claims, resource
from .auth import TENANT
from .bodies import read_json_object, retry_count
from ..api.errors import APIError, container_not_found
from .state import ACTIVITY, CLUSTER, CREATOR, SETTINGS, SIDECARS

routes = web.RouteTableDef()


def check_domain_secret_size(params: ContainerCreateParams, limit: int) -> None:
    """All values of a container share one Secret, and a Secret holds at most 1 MiB."""
    secrets = getattr(params.network_policy, "domain_secrets", None) or []
    total = sum(len(secret.value.encode()) for secret in secrets)
    if total > limit:
        raise APIError(400, f"The domain_secrets values total {total} bytes; at most {limit} bytes are supported.",
                       param="network_policy.domain_secrets", code="invalid_value")


def check_domain_secrets_supported(params: ContainerCreateParams, egress_mode: str) -> None:
    """In Cilium mode the CNI enforces allowlists and no proxy could swap a placeholder for a value."""
    if egress_mode == "cilium" and getattr(params.network_policy, "domain_secrets", None):
        raise APIError(400, "domain_secrets are not supported by this server: its allowlists are enforced by "
                            "Cilium, without the egress proxy that substitutes them. Send the request without "
                            "network_policy.domain_secrets.",
                       param="network_policy.domain_secrets", code="unsupported_parameter")


async def check_inputs(request: web.Request, params: ContainerCreateParams) -> list[dict] | None:
    """`file_ids` must name the caller's files, inline skills be valid bundles (kept for delivery)
    and skill references name versions of the caller's skills, before anything is written; the
    Container's `spec.skills`."""
    if not (params.file_ids or params.skills):
        return None
    return await check_create_inputs(request.app[FILE_STORE], request[TENANT].namespace, params.file_ids,
                                     params.skills, skill_store=request.app.get(SKILL_STORE))


def wire(request: web.Request, obj: dict) -> dict:
    """The container object of a resource, with activity seen here that the watch has not shown yet."""
    seen = request.app[ACTIVITY].seen(obj["metadata"]["namespace"], obj["metadata"]["name"])
    return resource.to_wire(obj, seen).model_dump(mode="json")


def find_container(request: web.Request) -> dict:
    """The caller's container named in the path; 404 for unknown ids and other tenants' ids alike."""
    container_id = request.match_info["container_id"]
    obj = request.app[CLUSTER].containers.get(request[TENANT].namespace, container_id)
    if obj is None:
        raise container_not_found(container_id)
    return obj


def touch(request: web.Request, obj: dict) -> None:
    """Count an operation as activity (idle expiry); an expired container stays expired."""
    if resource.status_of(obj) != "expired":
        request.app[ACTIVITY].touch(obj["metadata"]["namespace"], obj["metadata"]["name"])


@routes.post("/v1/containers")
async def create_container(request: web.Request) -> web.Response:
    params = ContainerCreateParams.model_validate(await read_json_object(request))
    settings = request.app[SETTINGS]
    check_domain_secrets_supported(params, settings.egress_mode)
    check_domain_secret_size(params, settings.max_domain_secret_bytes)
    skills = await check_inputs(request, params)
    creator = request.app[CREATOR]
    answer = await creator.create(
        request[TENANT], params,
        idempotency_key=request.headers.get("Idempotency-Key") or None,
        retry_count=retry_count(request),
        skills=skills if params.skills else None,
        connected=reply_claims.connection_open(request),
    )
    response = web.json_response(wire(request, answer.obj))
    # Sent here, not by aiohttp after the return: whether it reached an open connection decides
    # whether a retry of this body may get the same container.
    creator.settle(answer, await reply_claims.send(request, response))
    return response


@routes.get("/v1/containers")
async def list_containers(request: web.Request) -> web.Response:
    params = ListParams.from_query(request.query)
    try:
        page = request.app[CLUSTER].containers.page(request[TENANT].namespace, params, request.query.get("name"))
    except UnknownCursor:
        raise APIError(400, f"Invalid 'after': no container with id '{params.after}'.", param="after",
                       code="invalid_value") from None
    return web.json_response(page.envelope(lambda o: wire(request, o)))


@routes.get("/v1/containers/{container_id}")
async def retrieve_container(request: web.Request) -> web.Response:
    obj = find_container(request)
    touch(request, obj)
    return web.json_response(wire(request, obj))


@routes.delete("/v1/containers/{container_id}")
async def delete_container(request: web.Request) -> web.Response:
    obj = find_container(request)
    namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    await request.app[CLUSTER].delete_container(namespace, name)
    request.app[CLUSTER].containers.forget_deleted(obj)
    request.app[ACTIVITY].forget(namespace, name)
    request.app[SIDECARS].forget(obj)
    return web.json_response(ContainerDeleted(id=resource.container_id(obj)).model_dump(mode="json"))
