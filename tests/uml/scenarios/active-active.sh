#!/bin/sh
# An active-active pair, from the files dsrgen generated for tests/uml/
# fixtures/active-active.yaml: lb1 is MASTER of www (which lists it first) and
# lb2 of api; each forwards its own cluster. When lb1's keepalived stops, lb2
# holds and forwards both.
set -eu
# shellcheck source=tests/uml/lib.sh
. "$(dirname "$0")/../lib.sh"
TREE=$SCRATCH/active-active
WWW=198.51.100.181
API=198.51.100.182

hosts client lb1 lb2 web1 web2
backends "$TREE" web1 web2
for lb in lb1 lb2; do
	deploy "$TREE" "$lb"
done
start_keepalived lb1
start_keepalived lb2

holders() {
	for lb in lb1 lb2; do
		if holds $lb "$1"; then printf '%s ' $lb; fi
	done
}
# held VIP HOLDERS: exactly these directors hold VIP.
held() {
	[ "$(holders "$1")" = "$2 " ]
}
# through LB VIP PORT: a request to VIP from client port PORT is answered,
# and LB's IPVS forwarded it.
through() {
	get "$3" "http://$2/" >/dev/null && ip netns exec "$1" ipvsadm -Lnc | grep -q "198.51.100.100:$3 .*$2:80 "
}
wait_for 10 held $WWW lb1
wait_for 10 held $API lb2
# Once the first elections are over (3 intervals and the skew: under 4 s).
sleep 4
held $WWW lb1 || fail "www is held by: $(holders $WWW)"
held $API lb2 || fail "api is held by: $(holders $API)"
wait_for 5 through lb1 $WWW 45001
wait_for 5 through lb2 $API 45002
say "both directors forward: www through lb1, api through lb2"

stopped=$(now_ms)
stop_keepalived lb1
wait_for 10 held $WWW lb2
say "lb2 holds www $(($(now_ms) - stopped)) ms after lb1's keepalived was told to stop"
held $API lb2 || fail "api is held by: $(holders $API)"
wait_for 5 through lb2 $WWW 45101
wait_for 5 through lb2 $API 45102
say "lb2 forwards both clusters"
echo PASS
