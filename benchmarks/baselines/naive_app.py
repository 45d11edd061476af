"""The tutorial's approach, as a baseline: pandas per request, two model calls, jsonify.

Run: BENCH_MODEL=path/to/model.joblib gunicorn -w 4 benchmarks.baselines.naive_app:app
"""

from __future__ import annotations

import os
from typing import Any

import joblib
import pandas as pd
from flask import Flask
from flask import jsonify
from flask import request

app = Flask(__name__)
model = joblib.load(os.environ["BENCH_MODEL"])


@app.post("/predict")
def predict() -> Any:
    try:
        frame = pd.DataFrame([request.json])
        prediction = model.predict(frame.values)
        probability = model.predict_proba(frame.values)
        return jsonify(
            {
                "prediction": int(prediction[0]),
                "probability": probability[0].tolist(),
                "status": "success",
            }
        )
    except Exception as exc:  # the tutorial's catch-all, kept for fidelity
        return jsonify({"error": str(exc), "status": "error"}), 400


@app.post("/predict_batch")
def predict_batch() -> Any:
    try:
        frame = pd.DataFrame(request.json["instances"])
        predictions = model.predict(frame.values)
        probabilities = model.predict_proba(frame.values)
        results = [
            {"prediction": int(p), "instance_id": i, "probability": probabilities[i].tolist()}
            for i, p in enumerate(predictions)
        ]
        return jsonify({"predictions": results, "status": "success"})
    except Exception as exc:
        return jsonify({"error": str(exc), "status": "error"}), 500
