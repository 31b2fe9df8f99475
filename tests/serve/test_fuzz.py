"""Schema-driven fuzzing of the API with schemathesis: every operation of /openapi.json with generated requests,
valid and invalid; no answer may be a 5xx, and every answer must conform to the schema (status code, content type,
body, auth). Left out: "a schema-valid request is accepted" — no schema can say that an upload must decode as a
video, and the server answers such bytes 415."""

from __future__ import annotations

import time

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402

EXAMPLES = 25  # at most, per operation: a bounded few hundred requests in all
BUDGET_S = 60.0


@pytest.mark.slow
def test_api_conforms_and_never_errs(server):
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 8
    sent, end = [], time.monotonic() + BUDGET_S
    for op in operations:
        @given(case=op.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case):
            if time.monotonic() < end:
                sent.append(case.call_and_validate(timeout=30, excluded_checks=[positive_data_acceptance]).status_code)

        fuzz()
    assert len(sent) >= 3 * len(operations) and max(sent) < 500
