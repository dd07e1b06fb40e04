#!/bin/sh
# A director on two segments and a routed cluster address, from the files
# dsrgen generated for tests/uml/fixtures/segments.yaml (ipvsadm). Segment A
# (br0, 198.51.100.0/24) holds web1 and web2, segment B (br1, 203.0.113.0/24)
# web3 and web4; lb1 and the client have a leg on each. Each segment's
# cluster is answered by its own backends, straight from their MACs on that
# segment. The routed address 192.0.2.10 (the client routes it via lb1's
# address on A) reaches web1 and web2 by DR, and no MAC answers ARP for it;
# with lb1's ARP settings at 0 (negative control, built in) lb1 answers.
set -eu
# shellcheck source=tests/uml/lib.sh
. "$(dirname "$0")/../lib.sh"
TREE=$SCRATCH/segments
VIP_A=198.51.100.181
VIP_B=203.0.113.181
ROUTED=192.0.2.10

# leg BRIDGE NAME IF ADDRESS MAC: interface IF of namespace NAME on BRIDGE.
leg() {
	[ -e "/sys/class/net/$1" ] || { ip link add "$1" type bridge && ip link set "$1" up; }
	[ -e "/run/netns/$2" ] || {
		ip netns add "$2"
		ip -n "$2" link set lo up
		ip netns exec "$2" sysctl -q -w net.ipv4.tcp_max_tw_buckets=0
		mkdir -p "/tmp/hosts/$2" "/run/hosts/$2"
	}
	ip link add "v-$2-$3" type veth peer name "$3" netns "$2"
	ip link set "v-$2-$3" master "$1" up
	ip -n "$2" link set "$3" address "$5"
	ip -n "$2" addr add "$4" dev "$3"
	ip -n "$2" link set "$3" up
}
leg br0 client eth0 198.51.100.100/24 02:00:00:00:0a:99
leg br1 client eth1 203.0.113.100/24 02:00:00:00:0b:99
leg br0 lb1 eth0 198.51.100.2/24 02:00:00:00:0a:02
leg br1 lb1 eth1 203.0.113.2/24 02:00:00:00:0b:02
leg br0 web1 eth0 198.51.100.11/24 02:00:00:00:0a:11
leg br0 web2 eth0 198.51.100.12/24 02:00:00:00:0a:12
leg br1 web3 eth0 203.0.113.13/24 02:00:00:00:0b:13
leg br1 web4 eth0 203.0.113.14/24 02:00:00:00:0b:14
# The route the operator's routers would carry: the routed cluster address
# via the director's own address on segment A.
ip -n client route add $ROUTED/32 via 198.51.100.2
say "namespaces ready"

apply "$TREE" lb1 etc/sysctl.d/90-dsrgen.conf
apply "$TREE" lb1 usr/local/sbin/dsrgen-vips
apply "$TREE" lb1 etc/ipvsadm.rules
echo "lb1's addresses:"
ip -n lb1 -o -4 addr show | awk '{print "  " $2, $4, $5, $6, $NF}'
held() {
	ip -n lb1 -o -4 addr show dev "$1" | grep -q " $2 .*$3"
}
held eth0 "$VIP_A/24" "eth0:1" || fail "lb1 does not hold $VIP_A/24 on eth0 (label eth0:1)"
held eth1 "$VIP_B/24" "eth1:2" || fail "lb1 does not hold $VIP_B/24 on eth1 (label eth1:2)"
held lo "$ROUTED/32 scope host" "lo:3" || fail "lb1 does not hold $ROUTED/32 scope host on lo (label lo:3)"
if ip -n lb1 -o -4 addr show dev eth0 | grep -q " $ROUTED/"; then
	fail "lb1 holds the routed $ROUTED on eth0"
fi

backends "$TREE" web1 web2 web3 web4
say "backends ready"

# Packets from the cluster addresses as the client sees them on each leg.
for leg in eth0 eth1; do
	ip netns exec client tcpdump -i $leg -e -n -l "tcp and (src host $VIP_A or src host $VIP_B or src host $ROUTED)" >"$WORK/replies-$leg" 2>"$WORK/tcpdump-$leg.err" &
	echo $! >"$WORK/tcpdump-$leg.pid"
	wait_for 5 grep -q "listening on" "$WORK/tcpdump-$leg.err"
done

# requests NAME ADDRESS FIRST_PORT: four requests from distinct client ports.
requests() {
	port=$3
	: >"$WORK/served-$1"
	while [ "$port" -lt $(($3 + 4)) ]; do
		body=$(get "$port" "http://$2/") || fail "cluster $1: request from port $port to $2 got no answer"
		echo "$body" >>"$WORK/served-$1"
		port=$((port + 1))
	done
	served=$(sort -u "$WORK/served-$1" | tr '\n' ' ')
	say "cluster $1 ($2) served by: $served"
}
requests www $VIP_A 44001
[ "$served" = "web1 web2 " ] || fail "cluster www was not served by web1 and web2 alone: $served"
requests api $VIP_B 44101
[ "$served" = "web3 web4 " ] || fail "cluster api was not served by web3 and web4 alone: $served"
requests edge $ROUTED 44201
[ "$served" = "web1 web2 " ] || fail "routed cluster edge was not served by web1 and web2 alone: $served"
for leg in eth0 eth1; do
	kill "$(cat "$WORK/tcpdump-$leg.pid")"
	wait "$(cat "$WORK/tcpdump-$leg.pid")" 2>/dev/null || true
done
echo "connections on lb1:"
ip netns exec lb1 ipvsadm -Lnc

# macs LEG ADDRESS: the source MACs of packets from ADDRESS seen on LEG.
macs() {
	awk -v a="$2" 'length($2) == 17 && index($0, "> ") && $0 ~ (" " a "\\.80 > ") {print $2}' "$WORK/replies-$1" | sort -u | tr '\n' ' '
}
a=$(macs eth0 $VIP_A)
b=$(macs eth1 $VIP_B)
r=$(macs eth0 $ROUTED)
say "replies from $VIP_A on segment A came from: $a"
say "replies from $VIP_B on segment B came from: $b"
say "replies from $ROUTED on segment A came from: $r"
[ "$a" = "02:00:00:00:0a:11 02:00:00:00:0a:12 " ] || fail "replies of www did not come from web1's and web2's MACs on segment A"
[ "$b" = "02:00:00:00:0b:13 02:00:00:00:0b:14 " ] || fail "replies of api did not come from web3's and web4's MACs on segment B"
[ "$r" = "02:00:00:00:0a:11 02:00:00:00:0a:12 " ] || fail "replies of the routed edge did not come from web1's and web2's MACs"
[ -z "$(macs eth1 $VIP_A)$(macs eth0 $VIP_B)" ] || fail "a cluster's replies crossed to the other segment"

# No MAC answers ARP for the routed address on segment A, nor on B.
answers=$(arp_answers $ROUTED | tr '\n' ' ')
answers_b=$(ip netns exec client arping -b -c 3 -w 1 -I eth1 $ROUTED 2>/dev/null | grep -c 'reply from' || true)
say "ARP answers for the routed $ROUTED: segment A: '${answers}', segment B: $answers_b replies"
if [ -n "$answers" ] || [ "$answers_b" != 0 ]; then
	fail "a host answered ARP for the routed address $ROUTED"
fi
answers=$(arp_answers $VIP_A | tr '\n' ' ')
say "ARP answers for $VIP_A on segment A: $answers"
[ "$answers" = "02:00:00:00:0a:02 " ] || fail "ARP for $VIP_A answered by '$answers', not by lb1's eth0 alone"

# Negative control: without lb1's ARP settings, lb1 answers for the routed
# address it holds on lo.
for conf in all eth0 eth1; do
	ip netns exec lb1 sh -c "echo 0 >/proc/sys/net/ipv4/conf/$conf/arp_ignore; echo 0 >/proc/sys/net/ipv4/conf/$conf/arp_announce"
done
answers=$(arp_answers $ROUTED | tr '\n' ' ')
say "ARP answers for $ROUTED without lb1's ARP settings: $answers"
[ "$answers" = "02:00:00:00:0a:02 " ] || fail "negative control: without arp_ignore, lb1 did not answer ARP for $ROUTED"
echo PASS
