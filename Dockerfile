# The tokenledger image the docker-compose workers run.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY tokenledger tokenledger
COPY schemas schemas
COPY clickhouse clickhouse
RUN pip install --no-cache-dir '.[streams]'
ENTRYPOINT ["tokenledger"]
