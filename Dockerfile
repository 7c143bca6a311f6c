# The stream-learner service: `docker compose up` builds it from here.
# tests/integration/test_install_image.py builds the wheel from what the build stage copies, installs it in a
# fresh environment outside the repository and runs the CLI from another folder, as this image does.

# Build stage: the wheel, from the service's packages only.
FROM python:3.11-slim AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY stream_learner ./stream_learner
COPY strategies ./strategies
COPY connectors ./connectors
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim

# TORCH=cpu (default): PyTorch's CPU-only wheels of the tested torch and torchvision, from PyTorch's index. The
# service runs on CPUs; the CUDA build (TORCH=cuda: PyPI's default) adds about 3.9 GB of CUDA libraries.
ARG TORCH=cpu
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY --from=wheel /wheels /wheels
RUN set -eux; \
    case "$TORCH" in \
      cpu) pip install --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" ;; \
      cuda) ;; \
      *) echo "TORCH must be cpu or cuda, not '$TORCH'" >&2; exit 2 ;; \
    esac; \
    pip install /wheels/*.whl; \
    rm -rf /wheels; \
    useradd --create-home --uid 10001 app; \
    mkdir -p /data; \
    chown app /data
USER app
# Bytewax recovery state lives here; mount a volume so a restarted container resumes exactly.
WORKDIR /data
VOLUME ["/data"]
# Prometheus metrics (run --metrics-port 9100).
EXPOSE 9100

ENTRYPOINT ["stream-learner"]
CMD ["run", "--source", "kafka", "--metrics-port", "9100"]
