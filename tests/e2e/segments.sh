#!/bin/sh
# End-to-end proof of an nftables director on two segments, with files dsrgen
# generated from tests/e2e/segments.yaml (OUT). Run by
# tests/integration/system.rs as:
#   unshare --pid --fork --mount-proc --mount --net sh tests/e2e/segments.sh OUT
# so that every namespace and process it creates dies with it. lb, the
# client and the backends hang off two bridges in the outer namespace:
# segment A (br0, 198.51.100.0/24: web1, web2) and segment B (br1,
# 203.0.113.0/24: web3, web4); lb and the client have a leg on each. The
# balancer and the backends are configured only with the generated files.
#
# 1. Each segment's cluster (www on A, api on B) is served by that segment's
#    backends, and lb's frames for it leave by that segment's interface
#    alone (counters on lb's ports of the bridges).
# 2. mixed, with web1 (A) and web3 (B), is served by both, lb's frames for
#    it leaving by both interfaces; so is www6, its IPv6 counterpart.
# 3. edge, routed (the client routes it via lb's address on A), is served by
#    web2 (A) and web4 (B) by DR, and no host answers ARP for it on either
#    segment; without lb's ARP settings (negative control) lb answers.
# 4. Negative control: with the per-segment sets of backends swapped, www,
#    api and www6 get no answer; the real file, applied again, serves them
#    again.
set -eu

OUT=$1
WWW=198.51.100.181
API=203.0.113.181
MIXED=203.0.113.182
WWW6=2001:db8:a::181
EDGE=192.0.2.10
LB_MAC_A=02:00:00:00:0a:02
LB_MAC_B=02:00:00:00:0b:02
WORK=$(mktemp -d)
NFT=$OUT/hosts/lb/etc/nftables.d/dsrgen.nft

# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
ip link add br1 type bridge
ip link set br1 up

# leg BRIDGE HOST IF ADDRESS MAC [ADDRESS6]: interface IF of namespace HOST
# on BRIDGE, its peer v-HOST-IF. The IPv6 address is usable at once (nodad).
leg() {
	[ -e "/run/netns/$2" ] || {
		ip netns add "$2"
		ip -n "$2" link set lo up
		# The same client ports are used twice below: keep no TIME_WAIT
		# state that would refuse or confuse the second connection.
		ip netns exec "$2" sysctl -q -w net.ipv4.tcp_max_tw_buckets=0
	}
	ip link add "v-$2-$3" type veth peer name "$3" netns "$2"
	ip link set "v-$2-$3" master "$1" up
	ip -n "$2" link set "$3" address "$5"
	ip -n "$2" addr add "$4" dev "$3"
	[ -z "${6:-}" ] || ip -n "$2" addr add "$6" dev "$3" nodad
	ip -n "$2" link set "$3" up
}
leg br0 client eth0 198.51.100.100/24 02:00:00:00:0a:99 2001:db8:a::100/64
leg br1 client eth1 203.0.113.100/24 02:00:00:00:0b:99 2001:db8:b::100/64
leg br0 lb eth0 198.51.100.2/24 $LB_MAC_A 2001:db8:a::2/64
leg br1 lb eth1 203.0.113.2/24 $LB_MAC_B 2001:db8:b::2/64
leg br0 web1 eth0 198.51.100.11/24 02:00:00:00:0a:11 2001:db8:a::11/64
leg br0 web2 eth0 198.51.100.12/24 02:00:00:00:0a:12
leg br1 web3 eth0 203.0.113.13/24 02:00:00:00:0b:13 2001:db8:b::13/64
leg br1 web4 eth0 203.0.113.14/24 02:00:00:00:0b:14
# The routers a real network would have: the routed address via lb's address
# on A, and the backends' way back to a client on the other segment via the
# client's leg on their own. The client receives replies on one leg for a
# request it sent on the other: no reverse-path filter there.
ip -n client route add $EDGE/32 via 198.51.100.2
for web in web1 web2; do
	ip -n $web route add default via 198.51.100.100
done
for web in web3 web4; do
	ip -n $web route add default via 203.0.113.100
done
ip -n web1 -6 route add default via 2001:db8:a::100
ip -n web3 -6 route add default via 2001:db8:b::100
for conf in all default eth0 eth1; do
	ip netns exec client sysctl -q -w "net.ipv4.conf.$conf.rp_filter=0"
done

# Frames lb sends, counted on its ports of the bridges: to each cluster
# address, on each segment (A: v-lb-eth0, B: v-lb-eth1), and TCP replies
# from any of them (a reply through lb instead of straight from a backend;
# lb itself answers neighbour solicitations for www6 from www6).
{
	echo "table netdev count {"
	for name in www api mixed edge www6 from; do
		echo "	counter ${name}_A {}"
		echo "	counter ${name}_B {}"
	done
	echo "	chain in {"
	echo "		type filter hook ingress devices = { \"v-lb-eth0\", \"v-lb-eth1\" } priority 0;"
	for seg in A B; do
		port=v-lb-eth0
		[ $seg = A ] || port=v-lb-eth1
		echo "		iifname \"$port\" ip daddr $WWW counter name www_$seg"
		echo "		iifname \"$port\" ip daddr $API counter name api_$seg"
		echo "		iifname \"$port\" ip daddr $MIXED counter name mixed_$seg"
		echo "		iifname \"$port\" ip daddr $EDGE counter name edge_$seg"
		echo "		iifname \"$port\" ip6 daddr $WWW6 counter name www6_$seg"
		echo "		iifname \"$port\" ip saddr { $WWW, $API, $MIXED, $EDGE } tcp sport 80 counter name from_$seg"
		echo "		iifname \"$port\" ip6 saddr $WWW6 tcp sport 80 counter name from_$seg"
	done
	echo "	}"
	echo "}"
} >"$WORK/count.nft"
nft -f "$WORK/count.nft"
# frames NAME SEGMENT: the frames lb sent on SEGMENT counted by NAME.
frames() {
	nft list counter netdev count "${1}_$2" | sed -n 's/.*packets \([0-9]*\).*/\1/p'
}

# vips HOST VERB: the host's dsrgen-vips from OUT (tests/e2e/lib.sh).
vips() {
	vips_from "$OUT" "$1" "$2"
}

# The balancer: its ARP settings, its addresses (www on eth0, api and mixed
# on eth1, edge on lo, www6 on eth0) and the nftables table.
ip netns exec lb sysctl -q -p "$OUT/hosts/lb/etc/sysctl.d/90-dsrgen.conf"
vips lb up
ip netns exec lb nft -f "$NFT"
echo "lb's addresses:"
ip -n lb -o -4 addr show | awk '{print "  " $2, $4, $5, $6}'
ip -n lb -o -4 addr show to $EDGE | grep -q "^[0-9]*: lo .* scope host " || fail "lb does not hold the routed $EDGE on lo with scope host"

# The backends: ARP settings, loopback script, and a web server answering
# with the backend's name over IPv4 and IPv6.
for web in web1 web2 web3 web4; do
	ip netns exec "$web" sysctl -q -p "$OUT/hosts/$web/etc/sysctl.d/90-dsrgen.conf"
	vips "$web" up
	mkdir -p "$WORK/$web"
	echo "$web" >"$WORK/$web/index.html"
	ip netns exec "$web" /usr/bin/python3 -m http.server 80 --bind :: \
		--directory "$WORK/$web" >"$WORK/$web.log" 2>&1 &
done
for web in web1 web2 web3 web4; do
	wait_for ip netns exec "$web" curl --noproxy '*' -s --max-time 1 http://127.0.0.1/
done

# get PORT ADDRESS [SECONDS]: the body of a request from client port PORT.
get() {
	ip netns exec client curl --noproxy '*' -s --max-time "${3:-2}" --local-port "$1" "http://$2/"
}

# requests NAME ADDRESS FIRST_PORT: eight requests from distinct client ports;
# sets served to the backends that answered, sorted.
requests() {
	port=$3
	: >"$WORK/served-$1"
	while [ "$port" -lt $(($3 + 8)) ]; do
		body=$(get "$port" "$2") || fail "cluster $1: request from port $port to $2 got no answer"
		echo "$body" >>"$WORK/served-$1"
		port=$((port + 1))
	done
	served=$(sort -u "$WORK/served-$1" | tr '\n' ' ')
	flows=$(sort "$WORK/served-$1" | uniq -c | awk '{printf "%s%s %s", sep, $2, $1; sep = ", "}')
	echo "cluster $1 ($2): flows per backend: $flows; lb's frames to it: $(frames "$1" A) on A, $(frames "$1" B) on B"
}

# 1. Each segment's cluster: its own backends, its own interface.
requests www $WWW 41001
[ "$served" = "web1 web2 " ] || fail "www was not served by web1 and web2 alone: $served"
{ [ "$(frames www A)" -gt 0 ] && [ "$(frames www B)" -eq 0 ]; } || fail "lb's frames for www did not leave by eth0 alone"
requests api $API 41101
[ "$served" = "web3 web4 " ] || fail "api was not served by web3 and web4 alone: $served"
{ [ "$(frames api B)" -gt 0 ] && [ "$(frames api A)" -eq 0 ]; } || fail "lb's frames for api did not leave by eth1 alone"

# The client reached each by lb's MAC on its segment.
ip -n client neigh show $WWW | grep -q "lladdr $LB_MAC_A" || fail "the client's neighbour entry for $WWW is not lb's eth0"
ip -n client neigh show $API | grep -q "lladdr $LB_MAC_B" || fail "the client's neighbour entry for $API is not lb's eth1"

# 2. A cluster with a backend on each segment: both, by both interfaces.
requests mixed $MIXED 41201
[ "$served" = "web1 web3 " ] || fail "mixed was not served by web1 and web3: $served"
{ [ "$(frames mixed A)" -gt 0 ] && [ "$(frames mixed B)" -gt 0 ]; } || fail "lb's frames for mixed did not leave by both interfaces"
# lb answers neighbour solicitations for www6, on eth0, once its duplicate
# address detection is over.
wait_for sh -c "ip -n lb -6 addr show dev eth0 to $WWW6/128 | grep -q . && ! ip -n lb -6 addr show dev eth0 tentative | grep -q $WWW6"
requests www6 "[$WWW6]" 41401
[ "$served" = "web1 web3 " ] || fail "www6 was not served by web1 and web3: $served"
{ [ "$(frames www6 A)" -gt 0 ] && [ "$(frames www6 B)" -gt 0 ]; } || fail "lb's frames for www6 did not leave by both interfaces"

# 3. The routed address: served by DR through lb from both segments...
requests edge $EDGE 41301
[ "$served" = "web2 web4 " ] || fail "edge was not served by web2 and web4: $served"
{ [ "$(frames edge A)" -gt 0 ] && [ "$(frames edge B)" -gt 0 ]; } || fail "lb's frames for edge did not leave by both interfaces"
echo "lb's frames from a cluster address (replies through lb): $(frames from A) on A, $(frames from B) on B"
{ [ "$(frames from A)" -eq 0 ] && [ "$(frames from B)" -eq 0 ]; } || fail "lb sent a frame from a cluster address"

# ... and no host answers ARP for it on either segment.
# arp_replies IF ADDRESS: the MACs that answered ARP for ADDRESS on the
# client's IF, broadcast requests throughout (-b).
arp_replies() {
	ip netns exec client arping -b -c 3 -w 1 -I "$1" "$2" 2>/dev/null |
		sed -n 's/.*reply from [0-9.]* \[\([0-9a-fA-F:]*\)\].*/\1/p' | tr 'A-F' 'a-f' | sort -u | tr '\n' ' '
}
arp_replies eth0 $EDGE >"$WORK/arp-A" &
arp_a=$!
arp_replies eth1 $EDGE >"$WORK/arp-B" &
arp_b=$!
wait $arp_a
wait $arp_b
echo "ARP answers for the routed $EDGE: on A '$(cat "$WORK/arp-A")', on B '$(cat "$WORK/arp-B")'"
{ [ ! -s "$WORK/arp-A" ] && [ ! -s "$WORK/arp-B" ]; } || fail "a host answered ARP for the routed $EDGE"

# Negative control: without lb's ARP settings, lb answers for the routed
# address it holds on lo.
for conf in all eth0 eth1; do
	ip netns exec lb sh -c "echo 0 >/proc/sys/net/ipv4/conf/$conf/arp_ignore; echo 0 >/proc/sys/net/ipv4/conf/$conf/arp_announce"
done
answers=$(arp_replies eth0 $EDGE)
echo "ARP answers for $EDGE on A without lb's ARP settings: $answers"
[ "$answers" = "$LB_MAC_A " ] || fail "negative control: without its ARP settings, lb did not answer ARP for $EDGE"
ip netns exec lb sysctl -q -p "$OUT/hosts/lb/etc/sysctl.d/90-dsrgen.conf"

# 4. Negative control: the same file with the per-segment sets of backends
#    swapped sends A's backends out by eth1 and B's by eth0; www, api and
#    www6 get no answer (all tried at once: one timeout).
sed -e 's/^\(add element netdev dsrgen seg[46]_\)0 /\1X /' \
	-e 's/^\(add element netdev dsrgen seg[46]_\)1 /\10 /' \
	-e 's/^\(add element netdev dsrgen seg[46]_\)X /\11 /' "$NFT" >"$WORK/swapped.nft"
[ "$(diff "$NFT" "$WORK/swapped.nft" | grep -c '^>')" -eq 4 ] || fail "negative control: not four sets swapped in $NFT"
ip netns exec lb nft -f "$WORK/swapped.nft"
# try NAME ADDRESS PORT: one request, its outcome in WORK/swapped-NAME.
try() {
	if body=$(get "$3" "$2" 1); then
		echo "$1 answered by $body" >"$WORK/swapped-$1"
	else
		echo "$1 got no answer" >"$WORK/swapped-$1"
	fi
}
try www $WWW 41001 &
www_pid=$!
try api $API 41101 &
api_pid=$!
try www6 "[$WWW6]" 41401 &
www6_pid=$!
wait $www_pid $api_pid $www6_pid
echo "with the segments' sets swapped:"; cat "$WORK"/swapped-*
if grep -q answered "$WORK"/swapped-*; then fail "negative control: a request was answered with the segments' sets swapped"; fi
ip netns exec lb nft -f "$NFT"
body=$(get 41002 $WWW) || fail "www got no answer once the real file was applied again"
echo "the real file again: www answered by $body"
body=$(get 41102 $API) || fail "api got no answer once the real file was applied again"
echo "the real file again: api answered by $body"
body=$(get 41402 "[$WWW6]") || fail "www6 got no answer once the real file was applied again"
echo "the real file again: www6 answered by $body"
echo "PASS"
