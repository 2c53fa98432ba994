# The otel-agents demo agent, for the local stack (docker-compose.yml):
#   docker build -t otel-agents .
#   docker run --rm -p 9464:9464 otel-agents      # then http://localhost:9464/metrics
# The same image runs the metrics sidecar: `docker run ... otel-agents sidecar --multiproc-dir ...`.
FROM python:3.11.17-slim-trixie

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# what `pip install .` needs, and nothing else (see .dockerignore)
COPY pyproject.toml README.md /src/
COPY otel_agents /src/otel_agents
RUN pip install /src && rm -rf /src

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin agent \
    # the multiprocess directory, owned by the user that writes it: a named volume mounted
    # here starts as a copy of it, with its owner (a root-owned one would refuse init())
    && mkdir -p /var/run/livekit-metrics && chown agent:agent /var/run/livekit-metrics
USER agent
WORKDIR /home/agent

# /metrics and /healthz of `otel-agents demo` (and of `otel-agents sidecar`)
EXPOSE 9464

ENTRYPOINT ["otel-agents"]
CMD ["demo", "--serve", "--metrics-host", "0.0.0.0", "--metrics-port", "9464", \
     "--trace-file", "/tmp/otel-agents-demo-traces.jsonl"]
