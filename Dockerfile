# ptbill worker / beat / flower image (docker-compose.yml); the demo's embedded servers are not in it
FROM python:3.11.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY integration ./integration
COPY tasks ./tasks
COPY mappings ./mappings
RUN pip install . && useradd --system --uid 10001 ptbill
USER ptbill
# the worker refuses to start on invalid mapping tables; this makes the image fail fast too
RUN ptbill mappings check >/dev/null
CMD ["celery", "-A", "tasks.app", "worker", "-E", "-Q", "fhir_read,process,maintenance", "--loglevel=INFO"]
