# The worker image used by docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY setup.cfg pyproject.toml README.md ./
COPY streamapp ./streamapp
RUN pip install --no-cache-dir .
# The worker needs no root: its own user, owning the data folder (a new named volume
# mounted there takes this owner).
RUN useradd --system --create-home --uid 10001 streamapp \
    && mkdir -p /data && chown streamapp:streamapp /data
ENV WEB_HOST=0.0.0.0 WEB_PORT=6066 STREAMAPP_DATA_DIR=/data
# faust on uvloop, as `make run` (README: FAUST_LOOP).
ENV FAUST_LOOP=uvloop
VOLUME /data
EXPOSE 6066
USER streamapp
# 200 from /health once tables are recovered (503 before); no curl in the slim image.
HEALTHCHECK --interval=5s --timeout=5s --start-period=300s --retries=6 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('WEB_PORT', '6066'), timeout=4)"]
CMD ["faust", "-A", "streamapp.app", "worker", "-l", "info"]
