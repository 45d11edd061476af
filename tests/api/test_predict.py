"""Seed routes: /predict and /predict_batch on the default model and per model/version."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from flask.testing import FlaskClient

from modelserve.app import create_app
from modelserve.settings import ServerSettings

from .. import models


@pytest.mark.parametrize(
    "url", ["/predict", "/models/iris/predict", "/models/iris/versions/1/predict"]
)
def test_predict_equals_in_process(client: FlaskClient, url: str) -> None:
    trained = models.iris()
    for row in trained.x[::17]:
        resp = client.post(url, json=models.features_of(trained, row))
        assert resp.status_code == 200, resp.json
        labels, proba = trained.expected(row[None, :])
        body = resp.json
        assert body["status"] == "success"
        assert body["prediction"] == labels[0]
        assert isinstance(body["prediction"], int)
        assert body["probability"] == proba[0].tolist()
        assert body["class_name"] == trained.class_names[int(labels[0])]
        assert (body["model"], body["version"]) == ("iris", "1")


def test_predict_batch_objects_and_lists(client: FlaskClient) -> None:
    trained = models.forest()
    x = trained.x[:25]
    labels, proba = trained.expected(x)
    as_objects = [models.features_of(trained, row) for row in x]
    as_lists = x.tolist()
    mixed = [as_objects[i] if i % 2 else as_lists[i] for i in range(len(x))]
    for instances in (as_objects, as_lists, mixed):
        resp = client.post("/models/forest/predict_batch", json={"instances": instances})
        assert resp.status_code == 200, resp.json
        preds = resp.json["predictions"]
        assert [p["instance_id"] for p in preds] == list(range(len(x)))
        assert [p["prediction"] for p in preds] == labels.tolist()
        assert np.array_equal(np.array([p["probability"] for p in preds]), proba)


def test_batch_over_row_limit_is_413(repo: Path) -> None:
    settings = ServerSettings(
        profile="testing", model_path=repo, default_model="iris", max_batch_rows=3
    )
    client = create_app(settings).test_client()
    row = models.features_of(models.iris(), models.iris().x[0])
    assert client.post("/predict_batch", json={"instances": [row] * 3}).status_code == 200
    resp = client.post("/predict_batch", json={"instances": [row] * 4})
    assert resp.status_code == 413
    assert resp.json["type"] == "PayloadTooLarge"
    assert "MODELSERVE_MAX_BATCH_ROWS" in resp.json["error"]


def test_regressor_returns_float_and_null_probability(tmp_path: Path) -> None:
    trained = models.regressor()
    models.write_model(tmp_path, "diabetes", trained)
    client = create_app(ServerSettings(profile="testing", model_path=tmp_path)).test_client()
    resp = client.post("/predict", json=models.features_of(trained, trained.x[3]))
    assert resp.status_code == 200, resp.json
    assert resp.json["probability"] is None
    assert isinstance(resp.json["prediction"], float)
    assert resp.json["prediction"] == pytest.approx(
        trained.model.predict(trained.x[3:4])[0], rel=1e-12
    )


def test_string_labels_are_returned_as_the_model_knows_them(tmp_path: Path) -> None:
    trained = models.string_labels()
    models.write_model(tmp_path, "species", trained)
    client = create_app(ServerSettings(profile="testing", model_path=tmp_path)).test_client()
    x = trained.x[[0, 70, 140]]
    resp = client.post("/predict_batch", json={"instances": x.tolist()})
    assert [p["prediction"] for p in resp.json["predictions"]] == trained.model.predict(x).tolist()
    assert resp.json["predictions"][0]["prediction"] == "setosa"


def test_versions_default_to_highest(tmp_path: Path) -> None:
    trained = models.iris()
    models.write_model(tmp_path, "iris", trained, version="1")
    models.write_model(
        tmp_path,
        "iris",
        models.Trained(
            trained.model.__class__(max_iter=500, C=0.01).fit(
                trained.preprocessor.transform(trained.x),
                trained.model.classes_[np.arange(150) // 50],
            ),
            trained.x,
            trained.preprocessor,
            trained.feature_names,
            trained.class_names,
        ),
        version="2",
    )
    client = create_app(ServerSettings(profile="testing", model_path=tmp_path)).test_client()
    row = models.features_of(trained, trained.x[0])
    latest = client.post("/predict", json=row).json
    v1 = client.post("/models/iris/versions/1/predict", json=row).json
    v2 = client.post("/models/iris/versions/2/predict", json=row).json
    assert latest["version"] == "2" == v2["version"]
    assert v1["version"] == "1"
    assert latest["probability"] == v2["probability"] != v1["probability"]


def test_extra_fields_allowed_when_configured(repo: Path) -> None:
    trained = models.iris()
    row = {**models.features_of(trained, trained.x[0]), "customer_id": "abc"}
    strict = create_app(ServerSettings(profile="testing", model_path=repo, default_model="iris"))
    assert strict.test_client().post("/predict", json=row).status_code == 400
    lax = create_app(
        ServerSettings(
            profile="testing", model_path=repo, default_model="iris", allow_extra_fields=True
        )
    )
    resp = lax.test_client().post("/predict", json=row)
    assert resp.status_code == 200
    assert resp.json["prediction"] == trained.expected(trained.x[:1])[0][0]


def test_dataframe_fitted_pipeline_gets_named_columns(tmp_path: Path) -> None:
    """A model fitted on a DataFrame that selects columns by name, with a string category."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"age": rng.uniform(18, 80, 200), "plan": rng.choice(["basic", "pro"], 200)}
    )
    target = (frame["age"] > 50).astype(int) ^ (frame["plan"] == "pro").astype(int)
    model = make_pipeline(
        ColumnTransformer([("plan", OneHotEncoder(), ["plan"])], remainder="passthrough"),
        LogisticRegression(),
    ).fit(frame, target)
    trained = models.Trained(model, frame.to_numpy())
    models.write_model(
        tmp_path,
        "churn",
        trained,
        manifest={
            "inputs": [
                {"name": "age", "type": "number"},
                {"name": "plan", "type": "string", "enum": ["basic", "pro"]},
            ]
        },
    )
    client = create_app(ServerSettings(profile="testing", model_path=tmp_path)).test_client()
    resp = client.post("/predict", json={"age": 61.0, "plan": "pro"})
    assert resp.status_code == 200, resp.json
    expected = model.predict_proba(pd.DataFrame({"age": [61.0], "plan": ["pro"]}))[0]
    assert resp.json["probability"] == expected.tolist()
    bad = client.post("/predict", json={"age": 61.0, "plan": "gold"})
    assert bad.status_code == 400
    assert bad.json["details"][0]["path"] == "plan"
