# The worker image used by docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY setup.cfg pyproject.toml README.md ./
COPY streamapp ./streamapp
RUN pip install --no-cache-dir .
ENV WEB_HOST=0.0.0.0 STREAMAPP_DATA_DIR=/data
VOLUME /data
EXPOSE 6066
CMD ["faust", "-A", "streamapp.app", "worker", "-l", "info"]
