# syntax=docker/dockerfile:1
# One image for every process: `runpod-kubelet webhook|binder|certs|sandbox`.
# tests/chart/test_image.py runs the same install steps (build the wheel, install it into a
# fresh venv, run the console script) without a Docker engine; keep the two in step.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: turn the source tree into one wheel ---------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# The whole context minus .dockerignore; pyproject.toml decides which packages enter the wheel.
COPY . .
RUN pip wheel --no-deps --wheel-dir /wheels .

# --- install: the wheel and its dependencies into a venv ------------------------------------
FROM ${PYTHON_IMAGE} AS install
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY --from=build /wheels /wheels
RUN python -m venv /opt/runpod-kubelet \
 && /opt/runpod-kubelet/bin/pip install /wheels/*.whl \
 && /opt/runpod-kubelet/bin/runpod-kubelet --help

# --- runtime: the venv, nothing else; non-root, read-only friendly --------------------------
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/runpod-kubelet/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 runpod \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin runpod
COPY --from=install /opt/runpod-kubelet /opt/runpod-kubelet
USER 10001:10001
EXPOSE 8443 8080 10250
ENTRYPOINT ["runpod-kubelet"]
CMD ["--help"]
