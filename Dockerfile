# Runback's container image: python -m bot serve on $PORT (Cloud Run sets PORT; 8080 elsewhere).
# Two stages: the builder turns requirements.txt into wheels (with a compiler, for any package
# without a wheel for this platform); the final image installs those wheels and has no build
# tools. Build: docker build -t REGION-docker.pkg.dev/PROJECT/runback/runback:TAG .

FROM python:3.11-slim-bookworm AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /build
COPY requirements.txt .
RUN pip wheel --no-cache-dir --wheel-dir /wheels -r requirements.txt

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8080 \
    RUNBACK_CONFIG=/app/app.yaml
COPY --from=builder /wheels /wheels
COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir --no-index --find-links /wheels -r /tmp/requirements.txt \
    && rm -rf /wheels /tmp/requirements.txt
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin runback
WORKDIR /app
COPY bot/ bot/
COPY templates/ templates/
COPY app.yaml .
USER 10001:10001
EXPOSE 8080
CMD ["python", "-m", "bot", "serve"]
