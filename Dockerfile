# One image for every importq process: the worker services and Flower (docker-compose.yml).
# No secret is baked in: credentials arrive at run time from the environment or .env.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Workers run unprivileged; the home holds nothing but importq's data directory.
RUN groupadd --system importq \
    && useradd --system --gid importq --create-home --home-dir /home/importq importq

WORKDIR /src
# .dockerignore keeps .env, .git, .venv and the tests out of the build context.
COPY . .
RUN pip install ".[flower]"

USER importq
WORKDIR /home/importq
ENV IMPORTQ_HOME=/home/importq/.local/share/importq
EXPOSE 5555
CMD ["importq", "worker", "--targets", "all"]
