#!/bin/sh
# IPVS connection sync between two keepalived directors, from the files dsrgen
# generated for tests/uml/fixtures/sync.yaml (`sync_interface: eth0` on both):
# connections opened through the MASTER, lb1, keep working on the same
# backend after lb1's keepalived stops and lb2 takes the VIP, because lb2's
# sync daemon learnt them. (Without sync, lb2 has no entry for them: the next
# segment of such a connection is answered with a reset.)
set -eu
# shellcheck source=tests/uml/lib.sh
. "$(dirname "$0")/../lib.sh"
TREE=$SCRATCH/${DSRGEN_UML_TREE:-sync}
VIP=198.51.100.181

hosts client lb1 lb2 web1 web2
backends "$TREE" web1 web2
for lb in lb1 lb2; do
	deploy "$TREE" "$lb"
done
start_keepalived lb1
start_keepalived lb2
master_is() {
	holds "$1" $VIP && ! holds "$2" $VIP
}
wait_for 10 master_is lb1 lb2
# A backup of higher priority takes over after 3 intervals and its skew.
sleep 4
master_is lb1 lb2 || fail "lb1 is not MASTER alone"

held_lines() {
	[ "$(grep -c "$1" "$WORK/held")" -eq "$2" ]
}
rm -f "$WORK/go"
ip netns exec client /usr/bin/python3 "$(dirname "$0")/../hold.py" $VIP 44001 4 "$WORK/go" >"$WORK/held" 2>"$WORK/hold.log" &
wait_for 10 held_lines ' first ' 4
cat "$WORK/held"
# lb2 learns the connections from lb1's sync daemon.
synced() {
	[ "$(ip netns exec lb2 ipvsadm -Lnc | grep -c ':4400[1-4] ')" -eq 4 ]
}
if wait_for_quietly 5 synced; then
	say "lb2's IPVS knows the four connections (synced)"
else
	say "lb2's IPVS does not know the connections"
fi
ip netns exec lb2 ipvsadm -Lnc

stopped=$(now_ms)
stop_keepalived lb1
wait_for 10 master_is lb2 lb1
say "lb2 holds the VIP $(($(now_ms) - stopped)) ms after lb1's keepalived was told to stop"
touch "$WORK/go"
wait_for 10 held_lines ' second' 4
cat "$WORK/held"
for port in 44001 44002 44003 44004; do
	first=$(sed -n "s/^$port first //p" "$WORK/held")
	second=$(sed -n "s/^$port second //p" "$WORK/held")
	[ "$first" = "$second" ] || fail "the connection from port $port, served by $first through lb1, then got: $second"
done
say "the four connections opened through lb1 still work through lb2, on the same backends"
echo PASS
