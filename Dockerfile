# The tokenledger image the docker-compose workers run.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
# the package (SDK, tokenledger/contract/, tokenledger/streams/), and the data the wheel
# bundles: schemas/json/, schemas/prices/ and the ClickHouse SQL
COPY tokenledger tokenledger
COPY schemas schemas
COPY clickhouse clickhouse
RUN pip install --no-cache-dir '.[streams]'
ENTRYPOINT ["tokenledger"]
