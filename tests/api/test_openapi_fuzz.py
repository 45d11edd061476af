"""Fuzz a real server from its own ``/openapi.json`` (schemathesis): no answer may be a 5xx,
and every answer must be one the document lists, with the content type and body it says."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import Phase
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from schemathesis.checks import content_type_conformance
from schemathesis.checks import not_a_server_error
from schemathesis.checks import response_schema_conformance
from schemathesis.checks import status_code_conformance

from modelserve.codecs import tables

from .. import models
from ..codecs.test_tables import arrow_bytes
from ..codecs.test_tables import npy_bytes
from ..codecs.test_tables import parquet_bytes
from ..conftest import LiveServer
from ..conftest import running_server

pytestmark = pytest.mark.e2e

# schemathesis serializes no table type of its own (a case of one would not be sent): their
# ``format: binary`` bodies go out as bytes, like application/octet-stream.
schemathesis.serializer.alias(list(tables.TABLE_TYPES), "application/octet-stream")

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


def _iris_bodies() -> dict[str, bytes]:
    """Five iris rows in each table format the batch routes take."""
    x = models.iris().x[:5]
    table = pa.table({n: x[:, j] for j, n in enumerate(models.IRIS_FEATURES)})
    arrow, parquet = arrow_bytes(table), parquet_bytes(table)
    return {
        tables.ARROW: arrow,
        tables.PARQUET: parquet,
        "application/x-parquet": parquet,
        tables.NPY: npy_bytes(x),
    }


@st.composite
def _table_bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    """A table media type and a body: random bytes, or a valid body cut short or with a
    few bytes changed (which gets past the formats' magic numbers into their readers)."""
    media = draw(st.sampled_from(sorted(_iris_bodies())))
    valid = _iris_bodies()[media]
    how = draw(st.sampled_from(["bytes", "cut", "flip"]))
    if how == "bytes":
        return media, draw(st.binary(max_size=64))
    if how == "cut":
        return media, valid[: draw(st.integers(0, len(valid) - 1))]
    body = bytearray(valid)
    for at, value in draw(
        st.lists(
            st.tuples(st.integers(0, len(body) - 1), st.integers(0, 255)), min_size=1, max_size=6
        )
    ):
        body[at] = value
    return media, bytes(body)


@given(body=_table_bodies(), accept=st.sampled_from(tables.ANSWER_TYPES))
@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_table_bodies_get_documented_answers(
    api_schema: schemathesis.BaseSchema, body: tuple[str, bytes], accept: str
) -> None:
    """schemathesis sends the batch routes JSON only: their Arrow, Parquet and .npy bodies,
    valid or not, are fuzzed here, each answer checked against the document as above."""
    media, data = body
    operation = api_schema["/models/iris/predict_batch"]["POST"]
    case = operation.Case(body=data, media_type=media, headers={"Accept": accept})
    case.call_and_validate(checks=CHECKS, timeout=10)
