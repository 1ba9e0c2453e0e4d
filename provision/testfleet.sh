#!/usr/bin/env bash
# A test fleet of real SSH hosts on this machine: N independent sshd on 127.0.1.1..N (loopback),
# each allowing one Linux user of its own. Nothing of the system sshd is touched.
#
#   provision/testfleet.sh up N DIR     start the fleet; stays in the foreground as the sshd
#                                       supervisor (run it in the background) until `down`
#   provision/testfleet.sh down DIR     stop exactly what `up` started: its sshd, its users
#
# `up` writes into DIR: id_ed25519 (the controller's key), known_hosts (the hosts' keys, so no
# key is ever trusted on first use), fleet.toml ([fleet] + one [[sites]] per host: give it to a
# run with `fedsim run -c SCENARIO --fleet DIR/fleet.toml`), and `ready` once every sshd accepts
# connections.
# Settings: FLEET_NET (default 127.0.1), FLEET_PORT (2222), FLEET_USER (user prefix, fedsim-s).
# FLEET_NETNS=ID puts each site in a network namespace of its own instead: a veth pair to a bridge
# fsbrID holding 10.250.ID.1/24 (the coordinator's address), sites at 10.250.ID.11..; the range
# 10.250.0.0/16 is routed `unreachable` and the namespaces have no default route, so nothing
# leaves the machine. Each [[sites]] then gets a `cut_command` that takes its link down.
# Needs root (useradd, sshd) and Debian's openssh-server.
set -euo pipefail

net=${FLEET_NET:-127.0.1}
port=${FLEET_PORT:-2222}
prefix=${FLEET_USER:-fedsim-s}
sshd=/usr/sbin/sshd

die() { echo "testfleet: $*" >&2; exit 2; }

remove_users() {
    local dir=$1
    [ -f "$dir/users" ] || return 0
    while read -r user; do
        [ -z "$user" ] && continue
        # Sessions to a cut site cannot close by themselves: end the user's processes first.
        pkill -KILL -u "$user" 2>/dev/null || true
        sleep 0.1
        userdel -r "$user" >/dev/null 2>&1 || true
    done < "$dir/users"
    rm -f "$dir/users"
}

remove_netns() {
    local dir=$1 ns
    [ -f "$dir/netns" ] || return 0
    while read -r ns; do
        [ -z "$ns" ] && continue
        ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
        ip link del "fs${ns#fedsim}" 2>/dev/null || true
        ip netns del "$ns" 2>/dev/null || true
    done < "$dir/netns"
    [ -f "$dir/bridge" ] && ip link del "$(cat "$dir/bridge")" 2>/dev/null || true
    [ -f "$dir/route" ] && ip route del unreachable "$(cat "$dir/route")" 2>/dev/null || true
    rm -f "$dir/netns" "$dir/bridge" "$dir/route"
}

stop_daemons() {
    local dir=$1 f
    for f in "$dir"/site*/sshd.pid; do
        [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
    done
}

up() {
    local n=$1 dir=$2 i user home addr
    [ "$(id -u)" = 0 ] || die "must run as root (creates users, starts sshd)"
    [ -x "$sshd" ] || die "$sshd not found: apt-get install openssh-server"
    [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 250 ] || die "N must be 1..250"
    mkdir -p "$dir" && chmod 700 "$dir"
    # fleet.toml names the key and known_hosts by absolute path, whatever DIR was given as.
    dir=$(cd "$dir" && pwd)
    rm -f "$dir/ready"
    install -d -m 0755 /run/sshd
    [ -f "$dir/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C fedsim-controller -f "$dir/id_ed25519"
    : > "$dir/known_hosts"
    printf '[fleet]\nprovider = "ssh"\n' > "$dir/fleet.toml"
    touch "$dir/users"
    local nsid=${FLEET_NETNS:-} br=""
    if [ -n "$nsid" ]; then
        [[ "$nsid" =~ ^[0-9]+$ ]] && [ "$nsid" -le 250 ] || die "FLEET_NETNS must be 0..250"
        br="fsbr$nsid"
        ip link add "$br" type bridge && echo "$br" > "$dir/bridge"
        ip addr add "10.250.$nsid.1/24" dev "$br"
        ip link set "$br" up
        if ip route add unreachable 10.250.0.0/16 2>/dev/null; then echo 10.250.0.0/16 > "$dir/route"; fi
        : > "$dir/netns"
        printf 'coordinator = "10.250.%s.1:0"\n' "$nsid" >> "$dir/fleet.toml"
    fi
    printf '\n' >> "$dir/fleet.toml"
    for i in $(seq 1 "$n"); do
        user="$prefix$i"
        addr="$net.$i"
        if [ -n "$nsid" ]; then
            addr="10.250.$nsid.$((10 + i))"
            ip netns add "fedsim$nsid-$i" && echo "fedsim$nsid-$i" >> "$dir/netns"
            ip link add "fs$nsid-$i" type veth peer name eth0 netns "fedsim$nsid-$i"
            ip link set "fs$nsid-$i" master "$br" up
            ip netns exec "fedsim$nsid-$i" ip addr add "$addr/24" dev eth0
            ip netns exec "fedsim$nsid-$i" ip link set eth0 up
            ip netns exec "fedsim$nsid-$i" ip link set lo up
        fi
        if ! id "$user" >/dev/null 2>&1; then
            useradd -m -s /bin/sh "$user"
            echo "$user" >> "$dir/users"
        fi
        # A locked account ('!') is refused even for keys when PAM is off; '*' is "no password".
        usermod -p '*' "$user"
        home=$(getent passwd "$user" | cut -d: -f6)
        install -d -m 700 -o "$user" -g "$user" "$home/.ssh"
        install -m 600 -o "$user" -g "$user" "$dir/id_ed25519.pub" "$home/.ssh/authorized_keys"
        mkdir -p "$dir/site$i"
        rm -f "$dir/site$i/host_key" "$dir/site$i/host_key.pub"
        ssh-keygen -q -t ed25519 -N '' -C "site-$i" -f "$dir/site$i/host_key"
        cat > "$dir/site$i/sshd_config" <<EOF
Port $port
ListenAddress $addr
HostKey $dir/site$i/host_key
PidFile $dir/site$i/sshd.pid
AllowUsers $user
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
UsePAM no
StrictModes yes
Subsystem sftp internal-sftp
LogLevel INFO
EOF
        echo "[$addr]:$port $(cut -d' ' -f1,2 "$dir/site$i/host_key.pub")" >> "$dir/known_hosts"
        cat >> "$dir/fleet.toml" <<EOF
[[sites]]
name = "site-$i"
host = "$addr"
port = $port
user = "$user"
key = "$dir/id_ed25519"
known_hosts = "$dir/known_hosts"
EOF
        if [ -n "$nsid" ]; then
            printf 'cut_command = "ip link set fs%s-%s down"\n' "$nsid" "$i" >> "$dir/fleet.toml"
        fi
        printf '\n' >> "$dir/fleet.toml"
    done
    trap 'stop_daemons "$dir"' TERM INT
    for i in $(seq 1 "$n"); do
        # -D: stay a child of this shell, which reaps it (no zombies); -e: log to stderr.
        if [ -n "$nsid" ]; then
            ip netns exec "fedsim$nsid-$i" "$sshd" -D -e -f "$dir/site$i/sshd_config" 2> "$dir/site$i/sshd.log" &
        else
            "$sshd" -D -e -f "$dir/site$i/sshd_config" 2> "$dir/site$i/sshd.log" &
        fi
        echo $! > "$dir/site$i/sshd.pid"
    done
    for i in $(seq 1 "$n"); do
        addr="$net.$i"
        [ -n "$nsid" ] && addr="10.250.$nsid.$((10 + i))"
        for _ in $(seq 1 100); do
            (exec 3<>"/dev/tcp/$addr/$port") 2>/dev/null && break
            sleep 0.05
        done
        (exec 3<>"/dev/tcp/$addr/$port") 2>/dev/null || { stop_daemons "$dir"; wait; remove_users "$dir"; remove_netns "$dir"; die "sshd $i did not start: $(tail -n 3 "$dir/site$i/sshd.log")"; }
    done
    echo $$ > "$dir/supervisor.pid"
    touch "$dir/ready"
    echo "testfleet: $n hosts up on port $port; scenario fragment: $dir/fleet.toml" >&2
    wait || true
    rm -f "$dir/ready" "$dir/supervisor.pid" "$dir"/site*/sshd.pid
    remove_users "$dir"
    remove_netns "$dir"
    echo "testfleet: down" >&2
}

down() {
    local dir=$1 sup
    [ -d "$dir" ] || die "no fleet in $dir"
    stop_daemons "$dir"
    sup=$(cat "$dir/supervisor.pid" 2>/dev/null || true)
    if [ -n "$sup" ]; then
        for _ in $(seq 1 100); do
            kill -0 "$sup" 2>/dev/null || break
            sleep 0.05
        done
    fi
    # If the supervisor is gone (killed), clean up after it.
    remove_users "$dir"
    remove_netns "$dir"
    rm -f "$dir/ready"
}

case "${1:-}" in
    up) [ $# -eq 3 ] || die "usage: $0 up N DIR"; up "$2" "$3" ;;
    down) [ $# -eq 2 ] || die "usage: $0 down DIR"; down "$2" ;;
    *) die "usage: $0 up N DIR | down DIR" ;;
esac
