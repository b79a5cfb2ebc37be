"""Typed application state of the gateway."""

from __future__ import annotations

from aiohttp import web

from ..settings import GatewaySettings
from .activity import ActivityRecorder
from .cluster import Cluster
from .create import ContainerCreator
from .sidecar import SidecarClient

SETTINGS = web.AppKey("settings", GatewaySettings)
CLUSTER = web.AppKey("cluster", Cluster)
CREATOR = web.AppKey("creator", ContainerCreator)
ACTIVITY = web.AppKey("activity", ActivityRecorder)
SIDECARS = web.AppKey("sidecars", SidecarClient)
