# The streamfuse worker image: every subcommand of the `streamfuse` console script.
#   docker build -t streamfuse .      docker run --rm streamfuse --help
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# libgomp1: LightGBM's wheel links the system OpenMP runtime (XGBoost, torch and scikit-learn
# bring their own copy); the slim image has none.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY combiners ./combiners
COPY model_store ./model_store
COPY worker ./worker
# Every extra of [all], named one by one (some pip versions look a self-referencing extra of a
# local directory up on the index instead): the librdkafka transport (confluent-kafka's wheel bundles
# librdkafka), XGBoost, LightGBM, ONNX Runtime and Parquet. CPU-only torch wheels: the CUDA
# build would add gigabytes the worker never uses.
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu \
        ".[librdkafka,xgboost,lightgbm,onnx,parquet]" \
    && useradd --create-home --uid 10001 streamfuse \
    && mkdir /data && chown streamfuse /data

USER streamfuse
WORKDIR /data
EXPOSE 9464
ENTRYPOINT ["streamfuse"]
CMD ["--help"]
