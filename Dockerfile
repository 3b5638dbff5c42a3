# One image for every notifyq process (api, worker, beat, flower, sandbox, migrations).
# It runs as the unprivileged user notifyq, which owns the one place it writes: /app/var
# (beat's schedule; SQLite when no PostgreSQL is configured). The code stays root-owned
# and read-only to it.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN useradd --create-home --uid 10001 --user-group notifyq
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY api api
COPY tasks tasks
COPY scheduler scheduler
COPY providers providers
COPY store store
COPY config config
COPY observe observe
COPY worker worker
COPY cli cli
COPY sandbox sandbox
COPY harness harness
COPY webhooks webhooks
RUN pip install --no-cache-dir -c constraints.txt '.[postgres]' \
    && install -d -o notifyq -g notifyq -m 0750 /app/var
USER notifyq
ENTRYPOINT ["notifyq"]
