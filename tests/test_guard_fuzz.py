"""The guard's HTTP API fuzzed from its own OpenAPI schema with schemathesis, with valid requests and with
requests that break the schema (negative mode): no input gives a 5xx."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from tests.test_guard_server import server  # noqa: F401  (the module's running guard server)

EXAMPLES = 25
pytestmark = pytest.mark.slow  # about 30 s of requests: `make test-slow` (CI runs it)


@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
def test_no_request_gives_a_server_error(server, mode) -> None:  # noqa: F811
    auth = {"Authorization": f"Bearer {server.admin}"}
    schema = schemathesis.openapi.from_dict(httpx.get(server.url + "/openapi.json", headers=auth).json())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    failures: list[str] = []

    def fuzz(operation) -> None:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case) -> None:
            response = case.call(base_url=server.url, headers=auth, timeout=30)
            if response.status_code >= 500:
                failures.append(
                    f"{operation.method.upper()} {case.formatted_path}: {response.status_code} {response.text[:200]}"
                )

        try:
            run()
        except Unsatisfiable:  # negative mode: an operation without parameters or body has nothing to break
            skipped.append(operation.label)

    skipped: list[str] = []
    for operation in operations:
        fuzz(operation)
    assert not failures, "\n".join(failures[:10])
    assert not {"POST /v1/chat/completions", "POST /v1/check", "POST /admin/keys", "GET /admin/interactions"} & set(
        skipped
    )
