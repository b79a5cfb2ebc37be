"""`/openapi.json`: the OpenAPI 3.1 document, generated from the same pydantic wire models."""

from __future__ import annotations

from functools import cache

from pydantic.json_schema import models_json_schema

from .. import __name__ as _package
from ..api import (
    Container,
    ContainerCreateParams,
    ContainerDeleted,
    ContainerFile,
    ContainerFileCreateParams,
    ContainerFileDeleted,
    ContainerFileList,
    ContainerList,
    ErrorResponse,
)
from ..api.pagination import DEFAULT_LIMIT, MAX_LIMIT
from ..settings import FilesSettings
from ..api.file import MAX_EXPIRY_SECONDS, MIN_EXPIRY_SECONDS, UPLOAD_PURPOSES, FileDeleted, FileList, FileObject
from ..api.upload import Upload, UploadCompleteParams, UploadCreateParams, UploadPart
from ..api.skill import (
    DeletedSkill,
    DeletedSkillVersion,
    Skill,
    SkillList,
    SkillUpdateParams,
    SkillVersion,
    SkillVersionList,
)
from ..api.shell import (
    ExecParams,
    ShellCallOutput,
    ShellCallOutputContentDeltaEvent,
    ShellCallOutputContentDoneEvent,
    ShellCallOutputItemDoneEvent,
    ShellStreamErrorEvent,
)

_REF = "#/components/schemas/{model}"
FILES_MAX_LIST_LIMIT = FilesSettings.model_fields["max_list_limit"].default
_MODELS = [
    (ContainerCreateParams, "validation"), (ContainerFileCreateParams, "validation"),
    (Container, "serialization"), (ContainerList, "serialization"), (ContainerDeleted, "serialization"),
    (ContainerFile, "serialization"), (ContainerFileList, "serialization"),
    (ContainerFileDeleted, "serialization"), (ErrorResponse, "serialization"),
    (FileObject, "serialization"), (FileList, "serialization"), (FileDeleted, "serialization"),
    (ExecParams, "validation"), (ShellCallOutput, "serialization"),
    (ShellCallOutputContentDeltaEvent, "serialization"), (ShellCallOutputContentDoneEvent, "serialization"),
    (ShellCallOutputItemDoneEvent, "serialization"), (ShellStreamErrorEvent, "serialization"),
    (UploadCreateParams, "validation"), (UploadCompleteParams, "validation"), (Upload, "serialization"),
    (UploadPart, "serialization"), (Skill, "serialization"), (SkillList, "serialization"),
    (DeletedSkill, "serialization"), (SkillUpdateParams, "validation"), (SkillVersion, "serialization"),
    (SkillVersionList, "serialization"), (DeletedSkillVersion, "serialization"),
]


def _ref(model: type) -> dict:
    return {"$ref": _REF.format(model=model.__name__)}


def _json(model: type, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _errors(*statuses: int) -> dict:
    text = {400: "Invalid request", 401: "Missing or unknown API key", 404: "Not found",
            413: "File too large", 502: "The container could not run the commands (not retried)",
            503: "The container is not ready yet (see Retry-After)"}
    return {str(s): _json(ErrorResponse, text[s]) for s in statuses}


def _param(name: str, where: str, schema: dict, description: str, required: bool = False) -> dict:
    return {"name": name, "in": where, "required": required or where == "path", "schema": schema,
            "description": description}


_CONTAINER_ID = _param("container_id", "path", {"type": "string"}, "The container id (cntr_…).")
_FILE_ID = _param("file_id", "path", {"type": "string"}, "The file id (cfile_…).")
_STORED_FILE_ID = _param("file_id", "path", {"type": "string"}, "The stored file's id (file-…).")
_BINARY = {"description": "The raw bytes", "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
_AFTER = _param("after", "query", {"type": "string", "minLength": 1},
                "Exclusive cursor: the id of the last item already seen (an unknown or malformed id is a 400).")
_ORDER = _param("order", "query", {"type": "string", "enum": ["asc", "desc"], "default": "desc"}, "By created_at.")
_PAGING = [
    _AFTER,
    _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
           "Page size."),
    _ORDER,
]
# GET /files pages as OpenAI's does: up to 10,000 files, and that many by default
# (FilesSettings.max_list_limit; the document shows the default setting).
_FILES_PAGING = [
    _AFTER,
    _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": FILES_MAX_LIST_LIMIT,
                              "default": FILES_MAX_LIST_LIMIT}, "Page size."),
    _ORDER,
]


@cache
def openapi_document() -> dict:
    _, schemas = models_json_schema(_MODELS, ref_template=_REF)
    return {
        "openapi": "3.1.0",
        "info": {"title": "kontainers", "version": _version(),
                 "description": "The OpenAI Containers API, self-hosted on Kubernetes."},
        "servers": [{"url": "/v1"}],
        "security": [{"bearer": []}],
        "components": {"schemas": schemas.get("$defs", {}),
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/containers": {
                "post": {"operationId": "createContainer", "summary": "Create a container",
                         "requestBody": {"required": True, "content": {
                             "application/json": {"schema": _ref(ContainerCreateParams)}}},
                         # 404: a `file_ids` entry or a `skill_reference` that is not the caller's
                         "responses": {"200": _json(Container, "The container"), **_errors(400, 401, 404)}},
                "get": {"operationId": "listContainers", "summary": "List containers",
                        "parameters": [*_PAGING, _param("name", "query", {"type": "string"}, "Only this name.")],
                        "responses": {"200": _json(ContainerList, "A page of containers"), **_errors(400, 401)}},
            },
            "/containers/{container_id}": {
                "parameters": [_CONTAINER_ID],
                "get": {"operationId": "retrieveContainer", "summary": "Retrieve a container",
                        "responses": {"200": _json(Container, "The container"), **_errors(401, 404)}},
                "delete": {"operationId": "deleteContainer", "summary": "Delete a container",
                           "responses": {"200": _json(ContainerDeleted, "Deleted"), **_errors(401, 404)}},
            },
            "/containers/{container_id}/files": {
                "parameters": [_CONTAINER_ID],
                "post": {"operationId": "createContainerFile", "summary": "Upload a file into a container",
                         "requestBody": {"required": True, "content": {
                             "multipart/form-data": {"schema": {
                                 "type": "object", "required": ["file"],
                                 "properties": {"file": {"type": "string", "format": "binary"}}}},
                             "application/json": {"schema": _ref(ContainerFileCreateParams)}}},
                         "responses": {"200": _json(ContainerFile, "The file"), **_errors(400, 401, 404, 413, 503)}},
                "get": {"operationId": "listContainerFiles", "summary": "List a container's files",
                        "parameters": _PAGING,
                        "responses": {"200": _json(ContainerFileList, "A page of files"),
                                      **_errors(400, 401, 404, 503)}},
            },
            "/containers/{container_id}/files/{file_id}": {
                "parameters": [_CONTAINER_ID, _FILE_ID],
                "get": {"operationId": "retrieveContainerFile", "summary": "Retrieve a container file",
                        "responses": {"200": _json(ContainerFile, "The file"), **_errors(400, 401, 404, 503)}},
                "delete": {"operationId": "deleteContainerFile", "summary": "Delete a container file",
                           "responses": {"200": _json(ContainerFileDeleted, "Deleted"),
                                         **_errors(400, 401, 404, 503)}},
            },
            "/containers/{container_id}/files/{file_id}/content": {
                "parameters": [_CONTAINER_ID, _FILE_ID],
                "get": {"operationId": "retrieveContainerFileContent", "summary": "Download a container file",
                        "responses": {"200": _BINARY, **_errors(400, 401, 404, 503)}},
            },
            **_files_paths(),
            **_uploads_paths(),
            **_skills_paths(),
            **_exec_paths(),
        },
    }


def _exec_paths() -> dict:
    """`POST /containers/{id}/exec`: a shell call's commands, run in the container."""
    events = {"oneOf": [_ref(model) for model in (
        ShellCallOutputContentDeltaEvent, ShellCallOutputContentDoneEvent, ShellCallOutputItemDoneEvent,
        ShellStreamErrorEvent)]}
    return {
        "/containers/{container_id}/exec": {
            "parameters": [_CONTAINER_ID],
            "post": {"operationId": "execContainerCommands", "summary": "Run shell commands in a container",
                     "description": "The body is a shell call's `action` plus options; the reply is the "
                                    "`shell_call_output` item for the next `responses.create`. With `stream`, "
                                    "server-sent events (`event:` = the event's `type`), the last one "
                                    "`response.output_item.done` with that item.",
                     "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(ExecParams)}}},
                     "responses": {"200": {"description": "The shell_call_output item, or its event stream",
                                           "content": {"application/json": {"schema": _ref(ShellCallOutput)},
                                                       "text/event-stream": {"schema": events}}},
                                   **_errors(400, 401, 404, 502, 503)}},
        },
    }


def _files_paths() -> dict:
    """The Files API (`client.files.*`): what `file_ids` and `file_id` refer to."""
    # Fields the form may carry and no others (another is a 400 unknown_parameter).
    upload = {"type": "object", "required": ["file", "purpose"], "additionalProperties": False, "properties": {
        "file": {"type": "string", "format": "binary"},
        "purpose": {"type": "string", "enum": list(UPLOAD_PURPOSES)},
        "expires_after[anchor]": {"type": "string", "enum": ["created_at"],
                                  "description": "With expires_after[seconds]: the File expires that long after its creation."},
        "expires_after[seconds]": {"type": "integer", "minimum": MIN_EXPIRY_SECONDS,
                                   "maximum": MAX_EXPIRY_SECONDS, "description": "With expires_after[anchor]."}},
        "dependentRequired": {"expires_after[anchor]": ["expires_after[seconds]"],
                              "expires_after[seconds]": ["expires_after[anchor]"]}}
    return {
        "/files": {
            "post": {"operationId": "createFile", "summary": "Upload a file",
                     "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": upload}}},
                     "responses": {"200": _json(FileObject, "The file"), **_errors(400, 401, 413)}},
            "get": {"operationId": "listFiles", "summary": "List files",
                    "parameters": [*_FILES_PAGING,
                                   _param("purpose", "query", {"type": "string"}, "Only this purpose.")],
                    "responses": {"200": _json(FileList, "A page of files"), **_errors(400, 401)}},
        },
        "/files/{file_id}": {
            "parameters": [_STORED_FILE_ID],
            "get": {"operationId": "retrieveFile", "summary": "Retrieve a file",
                    "responses": {"200": _json(FileObject, "The file"), **_errors(401, 404)}},
            "delete": {"operationId": "deleteFile", "summary": "Delete a file",
                       "responses": {"200": _json(FileDeleted, "Deleted"), **_errors(401, 404)}},
        },
        "/files/{file_id}/content": {
            "parameters": [_STORED_FILE_ID],
            "get": {"operationId": "retrieveFileContent", "summary": "Download a file",
                    "responses": {"200": _BINARY, **_errors(401, 404)}},
        },
    }


def _uploads_paths() -> dict:
    """The Uploads API (`client.uploads.*`): a File sent in parts of at most 64 MB."""
    upload_id = _param("upload_id", "path", {"type": "string"}, "The Upload's id (upload_…).")
    part = {"type": "object", "required": ["data"], "additionalProperties": False,
            "properties": {"data": {"type": "string", "format": "binary"}}}
    return {
        "/uploads": {
            "post": {"operationId": "createUpload", "summary": "Create an Upload (expires after an hour)",
                     "requestBody": {"required": True, "content": {
                         "application/json": {"schema": _ref(UploadCreateParams)}}},
                     "responses": {"200": _json(Upload, "The pending Upload"), **_errors(400, 401)}},
        },
        "/uploads/{upload_id}/parts": {
            "parameters": [upload_id],
            "post": {"operationId": "addUploadPart", "summary": "Add a Part",
                     "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": part}}},
                     "responses": {"200": _json(UploadPart, "The Part"), **_errors(400, 401, 404, 413)}},
        },
        "/uploads/{upload_id}/complete": {
            "parameters": [upload_id],
            "post": {"operationId": "completeUpload", "summary": "Complete an Upload into a File",
                     "requestBody": {"required": True, "content": {
                         "application/json": {"schema": _ref(UploadCompleteParams)}}},
                     "responses": {"200": _json(Upload, "The completed Upload and its file"),
                                   **_errors(400, 401, 404)}},
        },
        "/uploads/{upload_id}/cancel": {
            "parameters": [upload_id],
            "post": {"operationId": "cancelUpload", "summary": "Cancel an Upload (its parts are removed)",
                     "responses": {"200": _json(Upload, "The cancelled Upload"), **_errors(400, 401, 404)}},
        },
    }


def _skills_paths() -> dict:
    """The Skills API (`client.skills.*`, `client.skills.versions.*`): what `skill_reference` names."""
    skill_id = _param("skill_id", "path", {"type": "string"}, "The skill's id (skill_…).")
    version = _param("version", "path", {"type": "string"}, "A version number, or `latest`.")
    bundle_form = {"type": "object", "required": ["files"], "properties": {
        "files": {"oneOf": [{"type": "string", "format": "binary", "description": "One zip"},
                            {"type": "array", "maxItems": 500, "description": "The files of one folder "
                             "(`files[]`), each named by its path in it",
                             "items": {"type": "string", "format": "binary"}}]}}}
    version_form = {**bundle_form, "properties": {**bundle_form["properties"], "default": {
        "type": "boolean", "description": "Make this version the default."}}}
    zip_reply = {"description": "The bundle (a zip)", "content": {
        "application/zip": {"schema": {"type": "string", "format": "binary"}}}}
    return {
        "/skills": {
            "post": {"operationId": "createSkill", "summary": "Create a skill (its version 1)",
                     "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": bundle_form}}},
                     "responses": {"200": _json(Skill, "The skill"), **_errors(400, 401)}},
            "get": {"operationId": "listSkills", "summary": "List skills", "parameters": _PAGING,
                    "responses": {"200": _json(SkillList, "A page of skills"), **_errors(400, 401)}},
        },
        "/skills/{skill_id}": {
            "parameters": [skill_id],
            "get": {"operationId": "retrieveSkill", "summary": "Retrieve a skill",
                    "responses": {"200": _json(Skill, "The skill"), **_errors(401, 404)}},
            "post": {"operationId": "updateSkill", "summary": "Set a skill's default version",
                     "requestBody": {"required": True, "content": {
                         "application/json": {"schema": _ref(SkillUpdateParams)}}},
                     "responses": {"200": _json(Skill, "The skill"), **_errors(400, 401, 404)}},
            "delete": {"operationId": "deleteSkill", "summary": "Delete a skill (containers keep their copies)",
                       "responses": {"200": _json(DeletedSkill, "Deleted"), **_errors(401, 404)}},
        },
        "/skills/{skill_id}/content": {
            "parameters": [skill_id],
            "get": {"operationId": "retrieveSkillContent", "summary": "Download the default version's zip",
                    "responses": {"200": zip_reply, **_errors(401, 404)}},
        },
        "/skills/{skill_id}/versions": {
            "parameters": [skill_id],
            "post": {"operationId": "createSkillVersion", "summary": "Add a version",
                     "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": version_form}}},
                     "responses": {"200": _json(SkillVersion, "The version"), **_errors(400, 401, 404)}},
            "get": {"operationId": "listSkillVersions", "summary": "List a skill's versions",
                    "parameters": [_AFTER, *_PAGING[1:2],
                                   _param("order", "query", {"type": "string", "enum": ["asc", "desc"],
                                                             "default": "desc"}, "By version number.")],
                    "responses": {"200": _json(SkillVersionList, "A page of versions"), **_errors(400, 401, 404)}},
        },
        "/skills/{skill_id}/versions/{version}": {
            "parameters": [skill_id, version],
            "get": {"operationId": "retrieveSkillVersion", "summary": "Retrieve a version",
                    "responses": {"200": _json(SkillVersion, "The version"), **_errors(400, 401, 404)}},
            "delete": {"operationId": "deleteSkillVersion", "summary": "Delete a version (not the default one)",
                       "responses": {"200": _json(DeletedSkillVersion, "Deleted"), **_errors(400, 401, 404)}},
        },
        "/skills/{skill_id}/versions/{version}/content": {
            "parameters": [skill_id, version],
            "get": {"operationId": "retrieveSkillVersionContent", "summary": "Download a version's zip",
                    "responses": {"200": zip_reply, **_errors(400, 401, 404)}},
        },
    }


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(_package)
    except PackageNotFoundError:
        return "0.0.0"
