"""schemathesis against the live OpenAPI document: generated requests (valid and not) with
an admin token to every operation but the endless event stream; no answer is a 5xx, and
every answer matches the schema (status, content type, body)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


@pytest.fixture(scope="module")
def live_schema(shared_serve):
    serve, _ = shared_serve
    return schemathesis.openapi.from_url(f"{serve.url}/api/v1/openapi.json", timeout=60)


# /events never ends by design (its stream is tested in test_api_live)
schema = schemathesis.pytest.from_fixture("live_schema").exclude(path_regex=r"/events$")


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_no_5xx_and_every_response_matches_the_schema(case, shared_serve):
    serve, tokens = shared_serve
    response = case.call_and_validate(  # raises when a check fails
        base_url=serve.url, headers=tokens.header("admin"), checks=CHECKS, timeout=60
    )
    assert response.status_code < 500, (case.method, case.path, response.text[:500])
