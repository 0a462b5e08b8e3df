# The streamfuse worker image: every subcommand of the `streamfuse` console script.
#   docker build -t streamfuse .      docker run --rm streamfuse --help
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY combiners ./combiners
COPY model_store ./model_store
COPY worker ./worker
# CPU-only torch wheels: the CUDA build would add gigabytes the worker never uses.
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu . \
    && useradd --create-home --uid 10001 streamfuse \
    && mkdir /data && chown streamfuse /data

USER streamfuse
WORKDIR /data
EXPOSE 9464
ENTRYPOINT ["streamfuse"]
CMD ["--help"]
