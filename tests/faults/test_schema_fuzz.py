"""Schema-driven fuzzing: schemathesis generates requests from the app's own OpenAPI schema
(valid ones and, in its coverage phase, invalid ones) for every operation, a bounded number
per operation, and every answer must be documented by the schema: no 5xx, no undocumented
status code, content type, header or body shape."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from qa.api import create_app

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance, negative_data_rejection]


@pytest.fixture(scope="module")
def api_schema(pristine, embedder, tmp_path_factory) -> Iterator[object]:
    settings = pristine.copy(tmp_path_factory.mktemp("fuzz") / "copy")
    app = create_app(settings, embedder=embedder, background=False)
    with TestClient(app):  # runs the lifespan: model and index loaded once
        yield schemathesis.openapi.from_asgi("/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_answer_is_what_the_schema_says(case) -> None:
    case.call_and_validate(checks=CHECKS)
