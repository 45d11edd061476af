"""Reference profiles and the population stability index, checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modelserve.drift import PSI_EPSILON
from modelserve.drift import bin_counts
from modelserve.drift import build_reference
from modelserve.drift import categorical_profile
from modelserve.drift import compare
from modelserve.drift import numeric_profile
from modelserve.drift import psi
from modelserve.predlog import LoggedPrediction
from modelserve.types import Feature
from modelserve.types import Signature


def test_psi_matches_a_hand_computation() -> None:
    # shares r = .5 .3 .2, c = .3 .3 .4:
    # (.3-.5) ln(.3/.5) + 0 + (.4-.2) ln(.4/.2) = .2 * .510826 + .2 * .693147 = .240795
    assert psi([50, 30, 20], [30, 30, 40]) == pytest.approx(0.2407946, abs=1e-6)
    # counts or shares: the same index
    assert psi([0.5, 0.3, 0.2], [3, 3, 4]) == pytest.approx(0.2407946, abs=1e-6)
    assert psi([5, 5], [5, 5]) == 0.0


def test_psi_counts_an_empty_bin_as_epsilon() -> None:
    # r = 1, 0 -> 1, 1e-4; c = .5, .5:
    # (.5-1) ln(.5/1) + (.5-1e-4) ln(.5/1e-4) = .346574 + .4999 * 8.517193 = 4.604318
    assert PSI_EPSILON == 1e-4
    assert psi([10, 0], [5, 5]) == pytest.approx(4.6043185, abs=1e-6)
    assert math.isfinite(psi([1, 0, 0], [0, 0, 1]))


def test_psi_refuses_histograms_that_do_not_compare() -> None:
    with pytest.raises(ValueError, match="shape"):
        psi([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="without any count"):
        psi([1, 2], [0, 0])


def test_numeric_bins_have_decile_edges_and_open_ends() -> None:
    values = list(range(100))  # 0..99
    profile = numeric_profile("x", values)
    assert profile["edges"] == [10, 20, 30, 40, 50, 60, 70, 80, 90]
    assert profile["counts"] == [10] * 10
    assert (profile["min"], profile["max"]) == (0.0, 99.0)
    # Below the first edge, above the last, exactly on an edge (goes up), and not numbers.
    counts, missing = bin_counts(profile, [-1000, 1000, 10, None, "a", True, math.nan])
    assert counts == [1, 1, 0, 0, 0, 0, 0, 0, 0, 1]
    assert missing == 4


def test_few_distinct_values_give_fewer_bins() -> None:
    profile = numeric_profile("x", [1.0] * 50 + [2.0] * 50)
    assert profile["edges"] == [1.0, 2.0]  # deduplicated deciles, each a value of the data
    assert profile["counts"] == [0, 50, 50]  # nothing below the minimum, in the reference


def test_categories_count_unseen_values_in_their_own_bin() -> None:
    profile = categorical_profile("colour", ["red", "red", "blue", "red"])
    assert profile["categories"] == ["red", "blue"]
    assert profile["counts"] == [3, 1, 0]
    assert bin_counts(profile, ["blue", "green", "red", 1])[0] == [1, 1, 2]
    # Booleans and numbers never share a bin (True == 1 in Python); 1 and 1.0 do.
    flags = categorical_profile("f", [True, 1, 1.0])
    assert flags["counts"] == [2, 1, 0] and flags["categories"] == [1, True]


def _signature(task: str = "classification") -> Signature:
    return Signature(
        (Feature("size"), Feature("colour", type="string")),
        task,  # type: ignore[arg-type]
    )


def test_reference_profiles_each_feature_and_the_predictions() -> None:
    rng = np.random.default_rng(0)
    table = np.empty((200, 2), dtype=object)
    table[:, 0] = rng.normal(10, 2, 200)
    table[:, 1] = rng.choice(["a", "b"], 200, p=[0.75, 0.25])
    ref = build_reference(
        _signature(),
        table,
        ["yes"] * 150 + ["no"] * 50,
        model="m",
        version=3,
        artifacts={"3/model.joblib": "ab" * 32},
        source="ref.csv",
    )
    assert ref["format"] == "modelserve.reference/1"
    assert (ref["model"], ref["version"], ref["rows"]) == ("m", 3, 200)
    size, colour = ref["features"]
    assert size["kind"] == "numeric" and len(size["edges"]) == 9 and sum(size["counts"]) == 200
    assert colour["kind"] == "categorical" and colour["categories"] == ["a", "b"]
    assert sum(colour["counts"]) == 200
    assert ref["predictions"]["categories"] == ["yes", "no"]
    assert ref["predictions"]["counts"] == [150, 50, 0]

    regression = build_reference(
        _signature("regression"), table, list(range(200)), model="m", version=1, artifacts={}
    )
    assert regression["predictions"]["kind"] == "numeric"


def test_compare_flags_the_shifted_feature_only() -> None:
    rng = np.random.default_rng(1)
    table = np.empty((1000, 2), dtype=object)
    table[:, 0] = rng.normal(10, 2, 1000)
    table[:, 1] = rng.choice(["a", "b"], 1000)
    ref = build_reference(_signature(), table, ["yes"] * 1000, model="m", version=1, artifacts={})
    rows = [{"size": float(s) + 4.0, "colour": c} for s, c in table.tolist()]  # size shifted
    record = LoggedPrediction(
        ts=0.0,
        model="m",
        version=1,
        request_id="r",
        latency_ms=1.0,
        rows=len(rows),
        inputs=rows,
        outputs={"predict": ["yes"] * 900 + ["no"] * 100},
    )
    report = compare(ref, [record], threshold=0.2)
    assert report["rows"] == 1000
    assert report["drifted"] == ["size"]
    size, colour = report["features"]
    assert size["psi"] > 1 and size["drifted"]
    assert colour["psi"] == 0.0 and not colour["drifted"]
    assert size["current"][-1] > 500  # most shifted values above the reference's last edge
    assert colour["reference"] == colour["current"]
    # The class mix: 10% "no", never seen in the reference.
    assert report["predictions"]["categories"] == ["yes"]
    assert report["predictions"]["current"] == [900, 100]
    assert report["predictions_drifted"] is True

    empty = compare(ref, [], threshold=0.2)
    assert empty["rows"] == 0 and empty["drifted"] == []
    assert all(
        f["psi"] is None and f["current"] == [0] * len(f["reference"]) for f in empty["features"]
    )
