# syntax=docker/dockerfile:1.7
# Build: docker build -t flinks-bff .   Run: docker-compose.yml, deploy/kubernetes, README.md.

FROM python:3.11-slim-bookworm AS builder
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_NO_DEV=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install --no-cache-dir uv==0.13.8
WORKDIR /app
# Dependencies first (a layer that changes only with the lock), then the project itself.
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-default-groups --no-install-project
COPY app ./app
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-default-groups --no-editable

FROM python:3.11-slim-bookworm AS runtime
# A numeric user, so Kubernetes' runAsNonRoot can verify it (deploy/kubernetes runs it as 10001).
RUN groupadd --system --gid 10001 bff && useradd --system --uid 10001 --gid bff --no-create-home bff
COPY --from=builder --chown=bff:bff /app/.venv /app/.venv
WORKDIR /app
# Bytecode is compiled in the builder; nothing is written at run time (read-only root filesystem).
ENV PATH="/app/.venv/bin:$PATH" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    BFF_HOST=0.0.0.0 BFF_PORT=8000
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('BFF_PORT', '8000'); sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{port}/livez', timeout=2).status != 200)"]
CMD ["flinks-bff", "serve"]
