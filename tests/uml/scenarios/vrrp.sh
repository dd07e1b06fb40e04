#!/bin/sh
# keepalived with VRRP, from the files dsrgen generated for
# tests/uml/fixtures/vrrp.yaml: lb1 (priority 150) and lb2 (100) start
# together; lb1 must become MASTER, hold the VIP and forward by IPVS DR. When
# lb1's keepalived stops, lb2 must take the VIP and the traffic within
# FAILOVER_MS; when it starts again, lb1 must take both back (preemption by
# priority).
set -eu
# shellcheck source=tests/uml/lib.sh
. "$(dirname "$0")/../lib.sh"
TREE=$SCRATCH/vrrp
VIP=198.51.100.181
FAILOVER_MS=5000

hosts client lb1 lb2 web1 web2
backends "$TREE" web1 web2

# serves_through LB PORT: a request from client port PORT is answered, and
# LB's IPVS forwarded it.
serves_through() {
	get "$2" >/dev/null && ip netns exec "$1" ipvsadm -Lnc | grep -q "198.51.100.100:$2 "
}

# master_is LB OTHER: LB holds the VIP, OTHER does not.
master_is() {
	holds "$1" $VIP && ! holds "$2" $VIP
}

holders() {
	for lb in lb1 lb2; do
		if holds $lb $VIP; then printf '%s ' $lb; fi
	done
}

# check_master LB OTHER FIRST_PORT: LB is MASTER alone, the client's ARP
# entry for the VIP is LB's MAC, and requests from four client ports reach
# both backends through LB.
check_master() {
	master_is "$1" "$2" || fail "$1 is not the only holder of the VIP; held by: $(holders)"
	port=$3
	: >"$WORK/served"
	while [ "$port" -lt $(($3 + 4)) ]; do
		wait_for 5 serves_through "$1" "$port"
		get "$port" >>"$WORK/served" || fail "request from port $port failed"
		port=$((port + 1))
	done
	sort -u "$WORK/served" | tr '\n' ' ' | grep -q '^web1 web2 $' ||
		fail "requests through $1 were served by: $(sort "$WORK/served" | tr '\n' ' ')"
	neigh=$(ip -n client neigh show $VIP)
	case $neigh in
	*"lladdr $(mac_of "$1") "*) ;;
	*) fail "the client's neighbour entry for the VIP is not $1's: $neigh" ;;
	esac
	say "$1 is MASTER and forwards: $(sort "$WORK/served" | tr '\n' ' ')"
}

for lb in lb1 lb2; do
	deploy "$TREE" "$lb"
done
started=$(now_ms)
start_keepalived lb1
start_keepalived lb2
both=$(now_ms)
wait_for 10 master_is lb1 lb2
say "lb1 took the VIP $(($(now_ms) - started)) ms after its keepalived started"
# Whoever starts first may be MASTER for a moment; a peer of higher priority
# takes over once it has waited 3 advertisement intervals and its skew
# (advert_int 1: under 4 s). Only then is the order the configured one.
while [ "$(now_ms)" -lt $((both + 4000)) ]; do
	sleep 0.1
done
for lb in lb1 lb2; do
	echo "IPVS on $lb:"
	ip netns exec "$lb" ipvsadm -Ln
done
check_master lb1 lb2 41001

# Failover: what `systemctl stop keepalived` does on the MASTER.
stopped=$(now_ms)
stop_keepalived lb1
wait_for 10 master_is lb2 lb1
vip_ms=$(($(now_ms) - stopped))
port=41100
until serves_through lb2 $port; do
	[ $(($(now_ms) - stopped)) -lt $((FAILOVER_MS * 2)) ] || fail "lb2 does not forward $((FAILOVER_MS * 2)) ms after lb1 stopped"
	port=$((port + 1))
done
took=$(($(now_ms) - stopped))
say "failover: lb2 held the VIP ${vip_ms} ms and forwarded a new connection ${took} ms after lb1's keepalived was told to stop"
[ "$took" -le $FAILOVER_MS ] || fail "failover took ${took} ms, more than ${FAILOVER_MS} ms"
check_master lb2 lb1 41201

# Back: lb1 (the higher priority) takes the VIP again.
restarted=$(now_ms)
start_keepalived lb1
wait_for 10 master_is lb1 lb2
say "lb1 took the VIP back $(($(now_ms) - restarted)) ms after its keepalived started"
check_master lb1 lb2 41301
echo PASS
