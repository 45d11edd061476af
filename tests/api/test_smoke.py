from __future__ import annotations

from flask.testing import FlaskClient

from .. import models


def test_predict_iris_equals_in_process(client: FlaskClient) -> None:
    trained = models.iris()
    row = trained.x[60]
    resp = client.post("/predict", json=models.features_of(trained, row))
    assert resp.status_code == 200, resp.json
    labels, proba = trained.expected(row[None, :])
    assert resp.json["prediction"] == labels[0]
    assert resp.json["probability"] == proba[0].tolist()
