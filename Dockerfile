# The stream-learner service: `docker compose up` builds it from here.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY stream_learner ./stream_learner
COPY strategies ./strategies
COPY connectors ./connectors
RUN pip install . \
    && useradd --create-home --uid 10001 app \
    && mkdir -p /data && chown app /data
USER app

# Bytewax recovery state lives here; mount a volume so a restarted container resumes exactly.
VOLUME ["/data"]
# Prometheus metrics (run --metrics-port 9100).
EXPOSE 9100

ENTRYPOINT ["stream-learner"]
CMD ["run", "--source", "kafka", "--metrics-port", "9100"]
