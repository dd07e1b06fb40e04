#!/bin/sh
# VRRP options, from the files dsrgen generated for tests/uml/fixtures/
# vrrp-options.yaml: three directors of one instance advertising by unicast,
# with a password included from a file that exists only on each director
# (written here, as an operator would: dsrgen never sees the secret).
#
# 1. Multicast is dropped on the segment (no bridge port floods it): by
#    unicast, lb1 (150) becomes the only MASTER over lb2 (100).
# 2. lb3 (200) is given the wrong password: its advertisements are refused,
#    and lb1 stays MASTER, lb2 BACKUP.
# 3. lb1's keepalived stops: lb2 takes the VIP by unicast within FAILOVER_MS.
# 4. lb1 (preempt: false) starts again: it does not take the VIP back.
set -eu
# shellcheck source=tests/uml/lib.sh
. "$(dirname "$0")/../lib.sh"
TREE=$SCRATCH/${DSRGEN_UML_TREE:-vrrp-options}
VIP=198.51.100.181
FAILOVER_MS=5000

hosts client lb1 lb2 lb3 web1 web2
# No bridge port floods multicast: VRRP's 224.0.0.18 reaches nobody.
for port in client lb1 lb2 lb3 web1 web2; do
	bridge link set dev "v-$port" mcast_flood off
done
backends "$TREE" web1 web2

# secret LB PASSWORD: the host-only file the generated configuration includes.
secret() {
	mkdir -p "/tmp/hosts/$1/etc/keepalived"
	printf 'authentication {\n    auth_type PASS\n    auth_pass %s\n}\n' "$2" >"/tmp/hosts/$1/etc/keepalived/vrrp-auth.conf"
}
for lb in lb1 lb2 lb3; do
	deploy "$TREE" "$lb"
done
secret lb1 s3cret
secret lb2 s3cret
secret lb3 wrong

holders() {
	for lb in lb1 lb2 lb3; do
		if holds $lb $VIP; then printf '%s ' $lb; fi
	done
}
# only HOLDERS: exactly these directors hold the VIP.
only() {
	[ "$(holders)" = "$1 " ]
}
# stays SECONDS HOLDERS: the holders do not change for SECONDS.
stays() {
	end=$(($(now_ms) + $1 * 1000))
	while [ "$(now_ms)" -lt "$end" ]; do
		only "$2" || fail "after the change, held by: $(holders)(want $2)"
		sleep 0.1
	done
}

# 1. Unicast with multicast dropped.
start_keepalived lb1
start_keepalived lb2
wait_for 10 only lb1
# A backup of higher priority would take over once it waited 3 intervals and
# its skew: under 4 s.
stays 5 lb1
say "multicast dropped: lb1 alone is MASTER over lb2, by unicast"
get 41001 >/dev/null || fail "no answer through lb1"

# 2. A director of higher priority with the wrong password.
start_keepalived lb3
# lb3 holds the VIP itself (it hears no peer it trusts): that is the rogue's
# side. The pair's is what counts: lb1 keeps it, lb2 does not take it.
wait_for 10 holds lb3 $VIP
stays 5 "lb1 lb3"
grep -q -i 'password\|auth' "$WORK/keepalived-lb1.log" ||
	say "(lb1's log says nothing about the refused advertisements)"
say "lb3 (priority 200, wrong password) did not take the VIP from lb1, nor hand it to lb2"
stop_keepalived lb3
wait_for 10 only lb1

# 3. Failover by unicast.
stopped=$(now_ms)
stop_keepalived lb1
wait_for 10 only lb2
took=$(($(now_ms) - stopped))
say "failover by unicast: lb2 held the VIP ${took} ms after lb1's keepalived was told to stop"
[ "$took" -le $FAILOVER_MS ] || fail "failover took ${took} ms, more than ${FAILOVER_MS} ms"
get 41101 >/dev/null || fail "no answer through lb2"

# 4. No preemption: lb1 comes back as BACKUP and leaves the VIP with lb2.
start_keepalived lb1
stays 6 lb2
say "lb1 (priority 150, preempt: false) came back and left the VIP with lb2"
echo PASS
