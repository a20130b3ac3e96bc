# Shared by the end-to-end tests that need a registry (sourced, not run): free_port, and
# start_registry NAME PORT [EXTRA-YAML], which serves Debian's docker-registry on loopback with
# its storage and log under $work/NAME. The caller defines $work, the registry_pids array and
# kills those pids at exit.
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
