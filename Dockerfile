# fraud-graph: one image for the scorer (`fraud serve`), the review app (`fraud review serve`), training jobs
# (`fraud train|retrain|simulate`) and the stack's MLflow tracking server (`mlflow server`).
#   docker build -t fraud-graph:0.1.0 .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GIT_PYTHON_REFRESH=quiet MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true
# libgomp: LightGBM and torch's OpenMP
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# CPU torch first (as `make install` does), so the project's torch==2.13.0 pin is already met: no CUDA wheels
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY fraud fraud
COPY models models
COPY streaming streaming
COPY benchmarks benchmarks
RUN pip install '.[postgres]' && rm -rf /src/build

# the numba kernels compiled once into the image (`fraud compile`); numba needs its cache folder writable
ENV NUMBA_CACHE_DIR=/opt/numba-cache
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin fraud \
    && mkdir -p /data /shared && chown fraud:fraud /data /shared \
    && fraud compile && chown -R fraud:fraud /opt/numba-cache
USER fraud
WORKDIR /data
EXPOSE 9108 8765
ENTRYPOINT ["fraud"]
CMD ["--help"]
