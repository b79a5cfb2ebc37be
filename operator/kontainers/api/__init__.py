"""OpenAI wire models (one per wire object), shared by the gateway, the sidecar and the tests."""

from .container import Container, ContainerDeleted, ContainerList, ExpiresAfter, NetworkPolicy
from .container_create import (
    ContainerCreateParams,
    DomainSecret,
    InlineSkill,
    InlineSkillSource,
    NetworkPolicyAllowlist,
    NetworkPolicyDisabled,
    SkillReference,
)
from .container_file import (
    ContainerFile,
    ContainerFileCreateParams,
    ContainerFileDeleted,
    ContainerFileList,
    FileRecord,
    FileRecordList,
)
from .errors import ErrorObject, ErrorResponse, error_body
from .pagination import ListParams, Page, UnknownCursor, paginate

__all__ = [
    "Container", "ContainerCreateParams", "ContainerDeleted", "ContainerFile", "ContainerFileCreateParams",
    "ContainerFileDeleted", "ContainerFileList", "ContainerList", "DomainSecret", "ErrorObject",
    "ErrorResponse", "ExpiresAfter", "FileRecord", "FileRecordList", "InlineSkill", "InlineSkillSource",
    "ListParams", "NetworkPolicy", "NetworkPolicyAllowlist", "NetworkPolicyDisabled", "Page",
    "SkillReference", "UnknownCursor", "error_body", "paginate",
]
