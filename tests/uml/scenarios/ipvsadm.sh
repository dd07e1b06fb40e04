#!/bin/sh
# IPVS direct routing with the rules dsrgen generated for ipvsadm
# (tests/uml/fixtures/ipvsadm.yaml), loaded with manifest.json's reload
# command. Requests from many client ports reach every backend; every reply
# comes straight from a backend's MAC with the VIP as source; the client's
# neighbour entry for the VIP stays the director's. The live table, as
# `ipvsadm-save -n` prints it, is left in SCRATCH/saved for the test to
# compare with the generated file.
set -eu
# shellcheck source=tests/uml/lib.sh
. "$(dirname "$0")/../lib.sh"
TREE=$SCRATCH/ipvsadm

hosts client lb1 web1 web2 web3
say "namespaces ready"

apply "$TREE" lb1 usr/local/sbin/dsrgen-vips
apply "$TREE" lb1 etc/ipvsadm.rules
ip netns exec lb1 ipvsadm-save -n >"$SCRATCH/saved"
echo "ipvsadm-save -n on lb1:"
cat "$SCRATCH/saved"

for web in web1 web2 web3; do
	apply "$TREE" "$web" etc/sysctl.d/90-dsrgen.conf
	apply "$TREE" "$web" usr/local/sbin/dsrgen-vips
done
start_web web1 web2 web3

say "backends ready"
capture_replies "$WORK/replies"
port=40001
while [ $port -le 40012 ]; do
	body=$(get $port) || fail "request from port $port got no answer"
	echo "$port $body" >>"$WORK/served"
	port=$((port + 1))
done
stop_capture

echo "served:"
cat "$WORK/served"
for web in web1 web2 web3; do
	grep -q " $web\$" "$WORK/served" || fail "$web served nothing"
done
echo "connections on lb1:"
ip netns exec lb1 ipvsadm -Lnc
neigh=$(ip -n client neigh show 198.51.100.181)
echo "client's neighbour entry for the VIP: $neigh"
case $neigh in
*"lladdr $(mac_of lb1) "*) ;;
*) fail "the client's neighbour entry for the VIP is not lb1's MAC" ;;
esac
reply_macs=$(source_macs "$WORK/replies")
echo "source MACs of packets from the VIP: $(echo "$reply_macs" | tr '\n' ' ')"
[ -n "$reply_macs" ] || fail "tcpdump saw no packet from the VIP"
for mac in $reply_macs; do
	case $mac in
	"$(mac_of web1)" | "$(mac_of web2)" | "$(mac_of web3)") ;;
	*) fail "a packet from the VIP came from $mac, not from a backend" ;;
	esac
done
[ "$(echo "$reply_macs" | wc -l)" -eq 3 ] || fail "replies came from $(echo "$reply_macs" | wc -l) backends' MACs, not 3"
echo PASS
