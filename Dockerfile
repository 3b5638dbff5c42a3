# One image for every notifyq process (api, worker, beat, flower, sandbox, migrations).
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml constraints.txt README.md ./
COPY api api
COPY providers providers
COPY scheduler scheduler
COPY tasks tasks
COPY worker worker
RUN pip install --no-cache-dir -c constraints.txt '.[postgres]'
RUN useradd --create-home notifyq
USER notifyq
ENTRYPOINT ["notifyq"]
