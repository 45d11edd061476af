# modelserve in a container: CPU-only, non-root, the models baked in and compiled at build time.
#
#   modelserve demo --no-serve --models-dir models    # or put your own repository in ./models
#   docker build -t modelserve:local .
#   docker run --rm -p 8080:8080 modelserve:local
#   docker run --rm -p 8080:8080 -v "$PWD/models:/models:ro" modelserve:local   # mounted instead
#
# A mounted repository is served as it is: compile its scikit-learn models beforehand with
# `modelserve optimize` (what the models stage below does to the baked ones).

# -- build: a virtual environment with modelserve and CPU torch ------------------------------
FROM python:3.11.11-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/modelserve
ENV PATH=/opt/modelserve/bin:$PATH

# The CPU build of torch first, from PyTorch's index: from PyPI pip would fetch the CUDA build
# (gigabytes of libraries a CPU server never loads).
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# The extras the server may need at run time: model formats, images, Redis (shared limits and
# cache), the prediction log (PostgreSQL), Celery jobs, JWTs.
ARG EXTRAS=onnx,torch,images,redis,predlog,jobs,jwt
RUN pip install --no-cache-dir ".[${EXTRAS}]"

# -- models: the repository in ./models, compiled to ONNX where it can be -------------------
FROM build AS models

COPY models/ /models/
# Each scikit-learn model gets an ONNX version (checked against scikit-learn first), so the
# server loads a small graph instead of unpickling and converting at every start. Models that
# are not scikit-learn, or that cannot be compiled, are served as they are (optimize says why).
RUN set -eu; \
    for model in /models/*/; do \
      modelserve optimize "${model%/}" || echo "modelserve optimize: ${model%/} served as it is"; \
    done

# -- runtime ---------------------------------------------------------------------------------
FROM python:3.11.11-slim-bookworm

# tini as PID 1: it forwards SIGTERM to modelserve's main process only (which drains, then
# stops its workers) and reaps orphans. Not `tini -g`: a signal to the whole group would reach
# granian's workers directly and skip the drain.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 modelserve \
    && useradd --system --uid 10001 --gid modelserve --home-dir /home/modelserve \
       --create-home --shell /usr/sbin/nologin modelserve

COPY --from=build /opt/modelserve /opt/modelserve
# Owned by root, readable by all: the server only reads its models.
COPY --from=models /models /models

ENV PATH=/opt/modelserve/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MODELSERVE_PROFILE=production \
    MODELSERVE_HOST=0.0.0.0 \
    MODELSERVE_PORT=8080

USER modelserve
WORKDIR /home/modelserve
EXPOSE 8080

# No curl in a slim image: Python's urllib. A 503 (loading, draining) or no answer fails it.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/v2/health/ready' % os.environ.get('MODELSERVE_PORT', '8080'), timeout=4)"]

# docker stop sends SIGTERM and waits 10 s by default: give it more than
# MODELSERVE_GRACEFUL_TIMEOUT (30 s) with `docker stop -t 35` (compose: stop_grace_period).
ENTRYPOINT ["tini", "--", "modelserve"]
CMD ["serve", "/models"]
