"""crm-api fuzzed from its own OpenAPI document: no request gets a 5xx, every 4xx is problem+json (decision 0016).

Valid and invalid requests (schemathesis's positive and negative modes), as a broker, as a realtor and
without a token. Half of the cases are aimed at the token's account and at leads seeded in it, so they get
past the tenant check and reach the queries. Strategies are driven with hypothesis directly (schemathesis's
pytest loader does not run under this pytest), as in test_intake_paths.py.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from crm_rows import assigned_row
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.result import Ok

from leadflow_crm_api.adapters.leads import CRM_LEADS
from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import insert_rows
from leadflow_devstack.tokens import bearer
from leadflow_shared.events.intake import Contact

pytestmark = pytest.mark.e2e

ACCOUNT = "crm-fuzz-realty"  # its own account, so the seeded rows change no other test's lists
AGENT = "fuzz-ana"
FUZZ = settings(max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck))
PROBLEM_JSON = "application/problem+json"


def seeded_row(n: int) -> dict[str, Any]:
    contact = Contact(first_name="Fuzz", last_name=f"Lead{n}", email=f"f{n}@example.com", phone="+15555550100")
    return assigned_row(ACCOUNT, AGENT, contact, minutes_ago=n)


@pytest.fixture(scope="module")
def lead_ids(stack: Stack) -> list[str]:
    rows = [seeded_row(n) for n in range(5)]
    return insert_rows(stack.mongo_url, CRM_LEADS, rows)


def aimed(case: schemathesis.Case[Any], lead_ids: list[str], pick: int) -> schemathesis.Case[Any]:
    """The case with its path naming the seeded account and one of its leads."""
    params = case.path_parameters or {}
    if "account_id" in params:
        params["account_id"] = ACCOUNT
    if "lead_id" in params:
        params["lead_id"] = lead_ids[pick % len(lead_ids)]
    return case


@pytest.mark.parametrize("caller", ["broker", "realtor", "anonymous"])
def test_fuzzed_requests_get_no_server_error_and_problem_details(
    stack: Stack, lead_ids: list[str], caller: str
) -> None:
    base = stack.url("crm-api")
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    results = list(schema.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results), "the OpenAPI document has operations schemathesis cannot read"
    assert {op.path for op in operations} >= {"/v1/accounts/{account_id}/leads", "/v1/realtors/me/leads"}

    auth: dict[str, str] = {}
    if caller == "broker":
        auth = bearer(stack.token(sub="fuzz-broker", role="broker", account_id=ACCOUNT))
    elif caller == "realtor":
        auth = bearer(stack.token(sub=AGENT, role="realtor", account_id=ACCOUNT))
    seen: set[int] = set()

    for operation in operations:
        modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        cases = st.one_of(*(operation.as_strategy(mode) for mode in modes))

        @FUZZ
        @given(case=cases, aim=st.booleans(), pick=st.integers(0, 100))
        def fuzz(case: schemathesis.Case[Any], aim: bool, pick: int) -> None:
            if aim:
                case = aimed(case, lead_ids, pick)
            # The caller's credentials only: a generated Authorization header is replaced or dropped. So is
            # a generated framing header: a Content-Length of 1 on a GET without a body had the server wait
            # for the byte and the client time out (the HTTP client owns the framing, not the fuzz).
            framing = {"authorization", "content-length", "transfer-encoding"}
            for name in [k for k in case.headers or {} if k.lower() in framing]:
                del case.headers[name]
            response = case.call(base_url=base, headers=auth, timeout=10)
            label = f"{case.method} {response.request.url} -> {response.status_code}: {response.text[:500]}"
            assert response.status_code < 500, label
            if response.status_code >= 400:
                assert response.headers.get("content-type") == [PROBLEM_JSON], label
                assert response.json()["status"] == response.status_code, label
            seen.add(response.status_code)

        fuzz()
    if caller == "anonymous":
        assert 401 in seen
    else:
        assert 200 in seen, f"no generated request got through as a {caller}: {sorted(seen)}"
