#!/usr/bin/env bash
# A simulated cluster on this machine: N hosts, each a network namespace with its own address (10.77.0.K) and
# hostname (nodeK), joined by a bridge in a namespace of its own; mpirun runs in a head namespace and starts one
# Open MPI daemon per host through a launcher agent that enters the host's namespace, as ssh would. Ranks on
# different hosts talk over TCP. Root only. Traffic never leaves the namespaces this script creates.
#
# usage:
#   simcluster.sh run HOSTS NP [--no-tcp] [--no-keepalive] [--launcher SPMDRUN] -- PROGRAM [ARGS...]
#       brings the hosts up, runs `mpirun -n NP` across them (NP/HOSTS slots per host, ranks grouped by host),
#       tears everything down (also on failure or signal), and exits with mpirun's status.
#       --no-tcp allows only the shared-memory and self transports (jobs spanning hosts must then fail).
#       --no-keepalive leaves out the TCP keepalive settings of mpirun's daemons (mpirun's own defaults).
#       --launcher (or $SIMCLUSTER_LAUNCHER) runs the job through that spmdrun instead of calling mpirun.
#       Environment variables named SPMD_* and RUST_BACKTRACE are passed to the ranks.
#   simcluster.sh check     exits 0 if this machine can run it (root, iproute2, unshare, mpirun), else says why.
#   simcluster.sh list      prints the hosts of running simulated clusters (namespaces named spmdsim-*).
#   simcluster.sh clean     removes the hosts and processes of clusters whose script has died.
#
# While a job runs, the file $SIMCLUSTER_INFO (if set) receives "ns <host> <namespace>" lines, so a test can act
# on one host (e.g. kill its processes: `ip netns pids <namespace> | xargs kill -9`).
set -euo pipefail

die() { echo "simcluster: $*" >&2; exit 2; }

check() {
    [ "$(id -u)" = 0 ] || { echo "simcluster: needs root (network namespaces); not root here"; return 1; }
    for c in ip unshare mpirun; do
        command -v "$c" >/dev/null || { echo "simcluster: '$c' is not installed"; return 1; }
    done
    ip netns list >/dev/null 2>&1 || { echo "simcluster: 'ip netns' does not work here"; return 1; }
    return 0
}

# Namespaces of clusters whose script has died are removed first.
clean_stale() {
    local ns pid
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^spmdsim-' || true); do
        pid=${ns#spmdsim-}
        pid=${pid%%-*}
        if ! kill -0 "$pid" 2>/dev/null; then
            for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
            ip netns del "$ns" 2>/dev/null || true
            rm -rf "/etc/netns/$ns"
        fi
    done
}

ID=$$
PFX="spmdsim-$ID"
SIM=""
NAMESPACES=()

teardown() {
    local ns p
    for ns in "${NAMESPACES[@]}"; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    done
    for ns in "${NAMESPACES[@]}"; do
        ip netns del "$ns" 2>/dev/null || true
        rm -rf "/etc/netns/$ns"
    done
    [ -n "$SIM" ] && rm -rf "$SIM"
    rmdir /etc/netns 2>/dev/null || true
    NAMESPACES=()
}

up() {
    local hosts=$1 k ns
    SIM=$(mktemp -d "${TMPDIR:-/tmp}/spmdsim.XXXXXX")
    local br="$PFX-br"
    ip netns add "$br"; NAMESPACES+=("$br")
    ip -n "$br" link set lo up
    ip -n "$br" link add br0 type bridge
    ip -n "$br" link set br0 up
    {
        echo "127.0.0.1 localhost"
        echo "10.77.0.254 head"
        for k in $(seq "$hosts"); do echo "10.77.0.$k node$k"; done
    } > "$SIM/hosts"
    for k in head $(seq "$hosts"); do
        ns="$PFX-$k"
        local addr=$k veth="s${ID}h$k" peer="s${ID}b$k"
        [ "$k" = head ] && { addr=254; veth="s${ID}hh"; peer="s${ID}bh"; }
        ip netns add "$ns"; NAMESPACES+=("$ns")
        ip -n "$ns" link set lo up
        # Both ends are created inside the namespaces: nothing appears in this machine's own namespace.
        ip -n "$br" link add "$peer" type veth peer name "$veth" netns "$ns"
        ip -n "$br" link set "$peer" master br0
        ip -n "$br" link set "$peer" up
        ip -n "$ns" addr add "10.77.0.$addr/24" dev "$veth"
        ip -n "$ns" link set "$veth" up
        # `ip netns exec` mounts these over /etc/hosts and /etc/resolv.conf: names resolve locally, no DNS.
        mkdir -p "/etc/netns/$ns"
        cp "$SIM/hosts" "/etc/netns/$ns/hosts"
        : > "/etc/netns/$ns/resolv.conf"
        [ -n "${SIMCLUSTER_INFO:-}" ] && echo "ns $k $ns" >> "$SIMCLUSTER_INFO"
        mkdir -p "$SIM/tmp-$k"
    done
    local slots=$2
    for k in $(seq "$hosts"); do echo "node$k slots=$slots"; done > "$SIM/hostfile"
    # The launcher agent: Open MPI calls it like ssh (`agent [options] host command...`). It enters the host's
    # namespace, takes the host's name, clears the environment as ssh does, and stays alive while the daemon runs.
    cat > "$SIM/agent" <<EOF
#!/usr/bin/env bash
while [ \$# -gt 0 ] && [ "\${1#-}" != "\$1" ]; do shift; done
host=\$1; shift
case "\$host" in
    node*) k=\${host#node} ;;
    10.77.0.*) k=\${host#10.77.0.} ;;
    *) echo "simcluster agent: unknown host \$host" >&2; exit 255 ;;
esac
ip netns exec "$PFX-\$k" unshare --uts -- /bin/sh -c 'hostname "\$0"; exec env -i PATH="\$1" HOME=/root TMPDIR="\$2" /bin/sh -c "\$3"' \\
    "node\$k" "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" "$SIM/tmp-\$k" "\$*"
EOF
    chmod +x "$SIM/agent"
}

run() {
    local hosts=$1 np=$2; shift 2
    local btl="tcp,vader,self" launcher="${SIMCLUSTER_LAUNCHER:-}"
    local keepalive=(--mca oob_tcp_keepalive_time 2 --mca oob_tcp_keepalive_intvl 1 --mca oob_tcp_keepalive_probes 3)
    [ -n "${SIMCLUSTER_NO_KEEPALIVE:-}" ] && keepalive=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do
        case $1 in
            --no-tcp) btl="vader,self" ;;
            --no-keepalive) keepalive=() ;;
            --launcher) shift; launcher=$1 ;;
            *) die "unknown option $1" ;;
        esac
        shift
    done
    [ "${1:-}" = "--" ] && shift
    [ $# -ge 1 ] || die "usage: simcluster.sh run HOSTS NP [--no-tcp] [--no-keepalive] [--launcher SPMDRUN] -- PROGRAM [ARGS...]"
    check >&2 || exit 2
    clean_stale
    trap 'teardown' EXIT
    trap 'teardown; exit 143' TERM
    trap 'teardown; exit 130' INT
    local slots=$(( (np + hosts - 1) / hosts ))
    up "$hosts" "$slots"
    local fwd=()
    for v in $(env | grep -o '^SPMD_[A-Za-z0-9_]*\|^RUST_BACKTRACE' || true); do fwd+=(-x "$v"); done
    # mpirun itself, or the spmdrun launcher (which adds the keepalive settings and the heartbeat itself).
    local run=(mpirun) sep=()
    if [ -n "$launcher" ]; then run=("$launcher" --mpirun mpirun); keepalive=(); sep=(--); fi
    local rc=0
    ip netns exec "$PFX-head" unshare --uts -- /bin/sh -c 'hostname head; exec "$@"' sh \
        env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 TMPDIR="$SIM/tmp-head" \
        "${run[@]}" -n "$np" --hostfile "$SIM/hostfile" \
        --mca plm_rsh_agent "$SIM/agent" --mca plm_rsh_no_tree_spawn 1 \
        --bind-to none --mca btl "$btl" \
        --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24 \
        "${keepalive[@]}" \
        --mca mpi_yield_when_idle 1 \
        "${fwd[@]}" "${sep[@]}" "$@" || rc=$?
    teardown
    trap - EXIT TERM INT
    return "$rc"
}

case "${1:-}" in
    run) shift; run "$@" ;;
    check) check ;;
    clean) clean_stale ;;
    list) ip netns list 2>/dev/null | awk '{print $1}' | grep '^spmdsim-' || true ;;
    *) sed -n '2,20p' "$0"; exit 2 ;;
esac
