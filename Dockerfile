# One image for every Pantau service; docker-compose.yml chooses the command:
#   python -m services.ingest gateway    python -m services.ingest validator
#   python -m services.scoring           python -m services.notify
# It runs as an unprivileged user and reads its config from /etc/pantau/pantau.yaml (mounted;
# no config or secret is baked in).

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# The base lockfile first (its layer stays cached while only the code changes), then Pantau itself
# with --no-deps: the image runs exactly the locked versions, without the [embedded] servers.
COPY requirements-base.lock ./
RUN python -m venv /opt/pantau && /opt/pantau/bin/pip install --no-deps -r requirements-base.lock
COPY pyproject.toml ./
COPY shared ./shared
COPY services ./services
COPY cli ./cli
COPY pantau ./pantau
RUN /opt/pantau/bin/pip install --no-deps .

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PATH=/opt/pantau/bin:$PATH \
    PANTAU_CONFIG=/etc/pantau/pantau.yaml
RUN useradd --system --uid 10001 --user-group --home-dir /app --create-home --shell /usr/sbin/nologin pantau
COPY --from=build /opt/pantau /opt/pantau
WORKDIR /app
USER pantau
EXPOSE 8080 8081 8082 9101
CMD ["python", "-m", "services.ingest", "gateway"]
