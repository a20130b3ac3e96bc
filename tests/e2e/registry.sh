# Shared by the end-to-end tests that need a registry (sourced, not run): free_port, and
# start_registry NAME PORT [EXTRA-YAML], which serves Debian's docker-registry on loopback with
# its storage and log under $work/NAME. The caller defines $work, the registry_pids array and
# kills those pids at exit (or calls isolate_registry_test, which does both).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_registry NAME PORT [EXTRA-YAML]: docker-registry with storage under $work/NAME.
start_registry() {
    local name=$1 port=$2 extra=${3:-}
    mkdir -p "$work/$name/storage"
    cat >"$work/$name/config.yml" <<YAML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/$name/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
$extra
YAML
    docker-registry serve "$work/$name/config.yml" >"$work/$name/registry.log" 2>&1 &
    registry_pids+=($!)
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "docker-registry $name did not start:"
    cat "$work/$name/registry.log"
    exit 1
}

# isolate_registry_test: after tests/e2e/lib.sh, for tests that start registries: the
# registries are stopped and $work removed at exit (EDGEFORGE_KEEP_WORK=1 keeps it), HOME is
# a scratch directory (and XDG_CONFIG_HOME unset) so no credentials or certs.d of the person
# running the tests leak in, and loopback is never sent to a proxy from the environment.
isolate_registry_test() {
    registry_pids=()
    trap stop_registries_and_clean EXIT
    export HOME=$work/home
    mkdir -p "$HOME"
    unset REGISTRY_AUTH_FILE DOCKER_CONFIG XDG_RUNTIME_DIR XDG_CACHE_HOME XDG_CONFIG_HOME
    export no_proxy=127.0.0.1,localhost NO_PROXY=127.0.0.1,localhost
}
stop_registries_and_clean() {
    for pid in "${registry_pids[@]}"; do
        kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    if [ -n "${EDGEFORGE_KEEP_WORK:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
