"""Fuzz a real server from its own ``/openapi.json`` (schemathesis): no answer may be a 5xx,
and every answer must be one the document lists, with the content type and body it says."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import Phase
from hypothesis import settings
from schemathesis.checks import content_type_conformance
from schemathesis.checks import not_a_server_error
from schemathesis.checks import response_schema_conformance
from schemathesis.checks import status_code_conformance

from ..conftest import LiveServer
from ..conftest import running_server

pytestmark = pytest.mark.e2e

#: What the fuzzing checks; ``negative_data_rejection`` and the like judge API design
#: choices (extra fields allowed, lenient content types), not faults.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzzed_server(
    demo_repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """The demo models (two tabular, two image) behind one worker, loopback only; the jobs
    the fuzzing submits go to a folder of this test's own."""
    jobs = tmp_path_factory.mktemp("fuzzed-jobs")
    args = [str(demo_repo), "--threads", "4", "--default-model", "iris"]
    with running_server(args, {"MODELSERVE_JOBS_DIR": str(jobs)}) as server:
        yield server


@pytest.fixture(scope="module")
def api_schema(fuzzed_server: LiveServer) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(fuzzed_server.url + "/openapi.json", timeout=10)


#: A model's ``/versions/<n>/`` paths run the same views on the same schemas as its paths
#: without a version, which are fuzzed (as are the templated ``/versions/{version}/`` ones):
#: left out to keep the test within its time.
schema = schemathesis.pytest.from_fixture("api_schema").exclude(
    path_regex=r"^(/v2)?/models/[^{/]+/versions/"
)


@schema.parametrize()
@settings(
    max_examples=3,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_every_answer_is_documented_and_none_is_a_server_error(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=CHECKS, timeout=10)
