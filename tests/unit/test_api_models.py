"""The wire models: strict create params, param naming in errors, domains, and pagination."""

from __future__ import annotations

import base64

import pytest
from pydantic import ValidationError

from kontainers.api import Container, ContainerCreateParams, ListParams, UnknownCursor, paginate
from kontainers.api.domains import domain_matches, normalize_domain
from kontainers.api.validation import describe, param_of


def error_of(body: dict) -> tuple[str, str | None, str]:
    with pytest.raises(ValidationError) as caught:
        ContainerCreateParams.model_validate(body)
    return describe(caught.value)


def test_every_param_is_accepted() -> None:
    zip_b64 = base64.b64encode(b"PK\x05\x06" + b"\0" * 18).decode()
    params = ContainerCreateParams.model_validate({
        "name": "all", "expires_after": {"anchor": "last_active_at", "minutes": 5}, "file_ids": [],
        "memory_limit": "4g",
        "network_policy": {"type": "allowlist", "allowed_domains": ["API.example.com.", "*.pypi.org"],
                           "domain_secrets": [{"domain": "api.example.com", "name": "API_KEY", "value": "s3cr3t"}]},
        "skills": [{"type": "skill_reference", "skill_id": "skill_1", "version": "latest"},
                   {"type": "inline", "name": "s", "description": "d",
                    "source": {"type": "base64", "media_type": "application/zip", "data": zip_b64}}],
    })
    assert params.network_policy.allowed_domains == ["api.example.com", "*.pypi.org"]
    assert params.expires_after.minutes == 5


@pytest.mark.parametrize(("body", "param", "code"), [
    ({}, "name", "missing_required_parameter"),
    ({"name": 5}, "name", "invalid_type"),
    ({"name": "x", "bogus": 1}, "bogus", "unknown_parameter"),
    ({"name": "x", "memory_limit": "2g"}, "memory_limit", "invalid_value"),
    ({"name": "x", "memory_limit": 1}, "memory_limit", "invalid_value"),
    ({"name": "x", "expires_after": {"anchor": "last_active_at", "minutes": "5"}}, "expires_after.minutes",
     "invalid_type"),
    ({"name": "x", "expires_after": {"anchor": "last_active_at", "minutes": 0}}, "expires_after.minutes",
     "invalid_value"),
    ({"name": "x", "expires_after": {"anchor": "created_at", "minutes": 5}}, "expires_after.anchor",
     "invalid_value"),
    ({"name": "x", "expires_after": {"minutes": 5}}, "expires_after.anchor", "missing_required_parameter"),
    ({"name": "x", "network_policy": {"type": "open"}}, "network_policy.type", "invalid_value"),
    ({"name": "x", "network_policy": {}}, "network_policy.type", "missing_required_parameter"),
    ({"name": "x", "network_policy": {"type": "allowlist", "allowed_domains": []}},
     "network_policy.allowed_domains", "invalid_value"),
    ({"name": "x", "network_policy": {"type": "allowlist"}}, "network_policy.allowed_domains",
     "missing_required_parameter"),
    ({"name": "x", "network_policy": {"type": "allowlist", "allowed_domains": ["https://a.com/x"]}},
     "network_policy.allowed_domains[0]", "invalid_value"),
    ({"name": "x", "network_policy": {"type": "disabled", "allowed_domains": ["a.com"]}},
     "network_policy.allowed_domains", "unknown_parameter"),
    ({"name": "x", "network_policy": {"type": "allowlist", "allowed_domains": ["a.com"],
                                      "domain_secrets": [{"domain": "b.com", "name": "K", "value": "v"}]}},
     "network_policy.domain_secrets", "invalid_value"),
    ({"name": "x", "network_policy": {"type": "allowlist", "allowed_domains": ["a.com"],
                                      "domain_secrets": [{"domain": "a.com", "name": "1BAD", "value": "v"}]}},
     "network_policy.domain_secrets[0].name", "invalid_value"),
    ({"name": "x", "skills": [{"type": "inline", "name": "s", "description": "d",
                               "source": {"type": "base64", "media_type": "application/zip", "data": "%%"}}]},
     "skills[0].source.data", "invalid_value"),
    ({"name": "x", "skills": [{"type": "magic"}]}, "skills[0].type", "invalid_value"),
    ({"name": "x", "file_ids": "file-1"}, "file_ids", "invalid_type"),
])
def test_invalid_params_name_the_param(body: dict, param: str, code: str) -> None:
    message, got_param, got_code = error_of(body)
    assert (got_param, got_code) == (param, code), message
    assert param in message


@pytest.mark.parametrize("domain", ["example.com", "a.b.example.co.uk", "*.example.com", "xn--bcher-kva.example",
                                    "EXAMPLE.com.", "a-b.example.com"])
def test_valid_domains(domain: str) -> None:
    assert normalize_domain(domain) == domain.lower().rstrip(".")


@pytest.mark.parametrize("domain", ["", "localhost", "http://example.com", "example.com/path", "example.com:443",
                                    "1.2.3.4", "[::1]", "user@example.com", "*example.com", "a.*.example.com",
                                    "-a.example.com", "a..example.com", "exa mple.com", "a" * 64 + ".com"])
def test_invalid_domains(domain: str) -> None:
    with pytest.raises(ValueError):
        normalize_domain(domain)


def test_wildcards_cover_subdomains_only() -> None:
    assert domain_matches("*.example.com", "api.example.com")
    assert domain_matches("*.example.com", "*.example.com")
    assert not domain_matches("*.example.com", "example.com")
    assert not domain_matches("*.example.com", "badexample.com")
    assert domain_matches("example.com", "example.com")


def test_param_of_drops_union_tags() -> None:
    assert param_of(("network_policy", "allowlist", "domain_secrets", 2, "value")) == \
        "network_policy.domain_secrets[2].value"
    assert param_of(()) is None


def test_container_wire_shape() -> None:
    body = Container(id="cntr_x", name="n", created_at=1, status="running", last_active_at=2,
                     network_policy={"type": "disabled"}).model_dump(mode="json")
    assert body["object"] == "container"
    assert body["network_policy"] == {"type": "disabled"}
    assert "domain_secrets" not in str(body)


# --- pagination -------------------------------------------------------------------------------

ITEMS = [{"id": f"i{n:03d}", "t": n // 3} for n in range(10)]  # ties in t, like one-second timestamps


def page(**query: str):
    return paginate(ITEMS, params=ListParams.from_query(query), id_of=lambda i: i["id"],
                    key_of=lambda i: (i["t"], i["id"]))


def walk(order: str, limit: int) -> list[str]:
    seen, after = [], None
    while True:
        query = {"order": order, "limit": str(limit), **({"after": after} if after else {})}
        result = page(**query)
        seen += [i["id"] for i in result.data]
        assert isinstance(result.has_more, bool)
        if not result.has_more:
            return seen
        after = result.data[-1]["id"]


@pytest.mark.parametrize("limit", [1, 3, 4, 10, 100])
def test_walking_pages_visits_each_item_once(limit: int) -> None:
    ids = [i["id"] for i in ITEMS]
    assert walk("asc", limit) == ids
    assert walk("desc", limit) == ids[::-1]


def test_defaults_and_envelope() -> None:
    result = page()
    assert [i["id"] for i in result.data] == [i["id"] for i in ITEMS][::-1]
    env = result.envelope()
    assert env == {"object": "list", "data": result.data, "first_id": "i009", "last_id": "i000", "has_more": False}
    empty = page(after="i000").envelope()
    assert empty == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}


def test_after_is_exclusive_in_the_requested_order() -> None:
    assert [i["id"] for i in page(after="i004", order="asc", limit="2").data] == ["i005", "i006"]
    assert [i["id"] for i in page(after="i004", order="desc", limit="2").data] == ["i003", "i002"]


def test_unknown_cursor_uses_the_remembered_key_or_fails() -> None:
    with pytest.raises(UnknownCursor):
        page(after="gone")
    params = ListParams.from_query({"after": "gone", "order": "asc"})
    result = paginate(ITEMS, params=params, id_of=lambda i: i["id"], key_of=lambda i: (i["t"], i["id"]),
                      after_key=(2, "i006z"))
    assert [i["id"] for i in result.data] == ["i007", "i008", "i009"]


@pytest.mark.parametrize(("query", "param"), [({"limit": "0"}, "limit"), ({"limit": "101"}, "limit"),
                                              ({"limit": "ten"}, "limit"), ({"order": "up"}, "order")])
def test_list_params_are_checked(query: dict, param: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ListParams.from_query(query)
    assert describe(caught.value)[1] == param
