"""Schemathesis over every operation of the OpenAPI document, with keys: no server errors, every
status documented, every body as documented. Bounded (a few examples per operation, no shrinking
deadline) so it costs seconds, not minutes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from faceforge.core.config import Settings
from faceforge.serving.api.app import create_app
from tests.api.fixtures import local_client, service_settings

ADMIN_KEY = "fuzz-admin"
EXAMPLES_PER_OPERATION = 5
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def api_schema(
    tmp_path_factory: pytest.TempPathFactory, settings: Settings
) -> Iterator[schemathesis.schemas.BaseSchema]:
    home = tmp_path_factory.mktemp("fuzz")
    database = f"sqlite:///{home / 'faceforge.db'}"
    app = create_app(service_settings(Path(home), database, settings, admin_keys=ADMIN_KEY))
    with local_client(app):  # runs the lifespan: storage and models ready for the fuzzer's calls
        yield schemathesis.openapi.from_asgi("/openapi.json", app)


def test_every_operation_answers_as_documented(api_schema: schemathesis.schemas.BaseSchema) -> None:
    failures: dict[str, str] = {}
    operations = []
    for result in api_schema.get_all_operations():
        assert isinstance(result, Ok), result  # an operation the fuzzer cannot read is a defect
        operations.append(result.ok())
    assert len(operations) >= 16

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,  # the same examples on every run and machine
            suppress_health_check=list(HealthCheck),
        )
        def call(case: schemathesis.Case[Any]) -> None:
            case.call_and_validate(headers={"X-API-Key": ADMIN_KEY}, checks=CHECKS)

        try:
            call()
        except Exception as error:  # every operation is fuzzed; all failures are reported together
            failures[operation.label] = f"{type(error).__name__}: {str(error)[:800]}"
    assert failures == {}, "\n\n".join(f"{label}\n{problem}" for label, problem in failures.items())
