"""The HTTP floor: a Flask app that does nothing but answer.

Run: gunicorn benchmarks.baselines.hello_app:app
(or: granian --interface wsgi benchmarks.baselines.hello_app:app)
"""

from __future__ import annotations

from flask import Flask

app = Flask(__name__)


@app.post("/predict")
def predict() -> str:
    return "ok"


@app.get("/health")
def health() -> str:
    return "ok"
