"""The lean floor: Flask + orjson + the pipeline compiled to ONNX; no validation, no features.

Run: BENCH_ONNX=model.onnx BENCH_FEATURES=a,b,... gunicorn benchmarks.baselines.lean_app:app
"""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
import orjson
from flask import Flask
from flask import Response
from flask import request

options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(
    os.environ["BENCH_ONNX"], options, providers=["CPUExecutionProvider"]
)
input_name = session.get_inputs()[0].name
names = os.environ["BENCH_FEATURES"].split(",")
app = Flask(__name__)


@app.post("/predict")
def predict() -> Response:
    data = orjson.loads(request.get_data())
    x = np.array([[data[n] for n in names]], dtype=np.float32)
    label, proba = session.run(None, {input_name: x})
    body = {"prediction": int(label[0]), "probability": proba[0].tolist(), "status": "success"}
    return Response(orjson.dumps(body), mimetype="application/json")
