#!/bin/sh
# End-to-end proof of the nftables balancer at scale (issue 17), with files
# dsrgen generated from tests/e2e/maglev.yaml (OUT8), from the same
# inventory without web5 (OUT7), with web5 drained, weight 0 (DRAINED), and
# with `persistence: 300` (PERSISTENT). Run by tests/integration/system.rs as:
#   unshare --pid --fork --mount-proc --mount --net sh tests/e2e/maglev.sh OUT8 OUT7 DRAINED PERSISTENT
# so that every namespace and process it creates dies with it.
#
# 1. Thousands of UDP flows from distinct client ports reach the eight
#    backends in proportion to their weights.
# 2. A router's ICMP "fragmentation needed" about one flow reaches the
#    backend serving it, whose route cache then holds the lowered MTU.
# 3. Applying OUT7 moves the flows of web5 and no other; so does applying
#    DRAINED, where web5 is still a backend of the balancer.
# 4. Negative control: without the pinned flows, the Maglev table alone moves
#    some flows whose backend stayed.
# 5. An ICMP error follows a pinned flow whose table slot moved.
# 6. With persistence, every flow of the client goes to one backend.
set -eu

OUT8=$1
OUT7=$2
DRAINED=$3
PERSISTENT=$4
HERE=$(dirname "$0")
VIP=198.51.100.181
CLIENT=198.51.100.100
PORT=5300
FLOWS=${FLOWS:-4000}
FIRST=20000
WORK=$(mktemp -d)
WEBS="web1 web2 web3 web4 web5 web6 web7 web8"

# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
n=0
for host in client router lb $WEBS; do
	n=$((n + 1))
	add_host "$host"
	ip -n "$host" link set eth0 address "$(printf '02:00:00:00:01:%02x' $n)"
done
ip -n client addr add $CLIENT/24 dev eth0
ip -n router addr add 198.51.100.1/24 dev eth0
ip -n lb addr add 198.51.100.2/24 dev eth0
i=0
for web in $WEBS; do
	i=$((i + 1))
	ip -n "$web" addr add "198.51.100.$((10 + i))/24" dev eth0
done
for host in client router lb $WEBS; do
	ip -n "$host" link set eth0 up
done

vips_from "$OUT8" lb up
ip netns exec lb nft -f "$OUT8/hosts/lb/etc/nftables.d/dsrgen.nft"
for web in $WEBS; do
	vips_from "$OUT8" "$web" up
	ip netns exec "$web" sysctl -q -p "$OUT8/hosts/$web/etc/sysctl.d/90-dsrgen.conf"
	ip netns exec "$web" /usr/bin/python3 "$HERE/udp.py" serve "$web" $VIP $PORT &
done
for web in $WEBS; do
	wait_for sh -c "ip netns exec $web ss -Hlun | grep -q '$VIP:$PORT'"
done

ask() {
	ip netns exec client /usr/bin/python3 "$HERE/udp.py" ask $VIP $PORT $FIRST "$FLOWS" >"$WORK/$1"
	answered=$(wc -l <"$WORK/$1")
	[ "$answered" -eq "$FLOWS" ] || fail "$1: $answered of $FLOWS flows answered"
}

# Each backend's share of the flows in file $1, next to its weight's share
# (weights in $2 as "name:weight ..."); fails beyond 2 points.
shares() {
	awk -v weights="$2" '
		BEGIN { n = split(weights, w, " "); for (i = 1; i <= n; i++) { split(w[i], kv, ":"); want[kv[1]] = kv[2]; total += kv[2] } }
		{ got[$2]++; flows++ }
		END {
			bad = 0
			for (b in want) {
				share = got[b] / flows; expect = want[b] / total
				printf "  %s %5.1f%% (weight %5.1f%%)\n", b, 100 * share, 100 * expect
				if (share - expect > 0.02 || expect - share > 0.02) bad = 1
			}
			for (b in got) if (!(b in want)) { printf "  %s served %d flows, weight 0\n", b, got[b]; bad = 1 }
			exit bad
		}' "$1"
}

# 1. Shares.
ask before
echo "shares of $FLOWS flows, eight backends:"
shares "$WORK/before" "web1:2 web2:1 web3:1 web4:1 web5:1 web6:1 web7:1 web8:1" ||
	fail "a backend's share is more than 2 points from its weight's"

# 2. ICMP fragmentation needed, about the reply of a flow served by web3.
port=$(awk '$2 == "web3" { print $1; exit }' "$WORK/before")
for web in $WEBS; do
	if ip -n "$web" route get $CLIENT | grep -q "mtu 1200"; then fail "$web has mtu 1200 already"; fi
done
ip netns exec router /usr/bin/python3 "$HERE/udp.py" frag-needed $VIP $CLIENT $PORT "$port" 1200
wait_for sh -c "ip -n web3 route get $CLIENT | grep -q 'mtu 1200'"
echo "web3, serving port $port, after the router's frag-needed: $(ip -n web3 route get $CLIENT | tr -s '\n ' ' ')"
for web in $WEBS; do
	if [ "$web" != web3 ] && ip -n "$web" route get $CLIENT | grep -q "mtu 1200"; then
		fail "the frag-needed for web3's flow reached $web too"
	fi
done

# 3. Drain web5 and apply, then remove it and apply: only web5's flows move,
#    the same way both times.
ip netns exec lb nft -f "$DRAINED/hosts/lb/etc/nftables.d/dsrgen.nft"
ask drained
ip netns exec lb nft -f "$OUT7/hosts/lb/etc/nftables.d/dsrgen.nft"
ask after
cmp -s "$WORK/drained" "$WORK/after" || fail "draining web5 and removing it sent flows to different backends"
moves() {
	awk 'NR == FNR { was[$1] = $2; next }
		$2 != was[$1] { moved++; if (was[$1] != "web5") stayed++ }
		END { printf "%d %d\n", moved, stayed }' "$WORK/before" "$1"
}
moves "$WORK/after" >"$WORK/moves"
read -r moved stayed <"$WORK/moves"
web5=$(awk '$2 == "web5"' "$WORK/before" | wc -l)
echo "after removing web5: $moved of $FLOWS flows moved ($web5 were web5's), $stayed of them from a backend that stayed"
[ "$stayed" -eq 0 ] || fail "$stayed flows moved although their backend stayed"
[ "$moved" -eq "$web5" ] || fail "$moved flows moved, web5 had $web5"
awk -v m="$moved" -v n="$FLOWS" 'BEGIN { exit !(m / n <= 1 / 8 + 0.02) }' || fail "more than 1/N + 2% of the flows moved"
if grep -q ' web5$' "$WORK/after"; then fail "web5 still gets flows"; fi
# web5's flows spread over the Maglev table's slots of web5: not a weight
# share, so only shown.
echo "shares after:"
shares "$WORK/after" "web1:2 web2:1 web3:1 web4:1 web6:1 web7:1 web8:1" || true

# 4. Negative control: forget the pins; the table alone moves more.
ip netns exec lb nft flush map netdev dsrgen flows
ask unpinned
moves "$WORK/unpinned" >"$WORK/moves"
read -r moved stayed <"$WORK/moves"
echo "negative control, without pins: $moved flows moved, $stayed of them from a backend that stayed"
[ "$stayed" -gt 0 ] || fail "negative control: without pins no flow of a staying backend moved"

# 5. An ICMP error follows the pin, not the table: pin the flows again with
#    eight backends, apply OUT7, and send a frag-needed about a flow that the
#    table alone would have moved (found in step 4) although its backend stayed.
awk 'NR == FNR { was[$1] = $2; next } $2 != was[$1] && was[$1] != "web5" { print $1, was[$1], $2; exit }' \
	"$WORK/before" "$WORK/unpinned" >"$WORK/flow"
read -r port pinned table <"$WORK/flow"
ip netns exec lb nft flush map netdev dsrgen flows
ip netns exec lb nft -f "$OUT8/hosts/lb/etc/nftables.d/dsrgen.nft"
ask again
cmp -s "$WORK/before" "$WORK/again" || fail "the same table and flows gave other backends"
ip netns exec lb nft -f "$OUT7/hosts/lb/etc/nftables.d/dsrgen.nft"
for web in $WEBS; do
	ip -n "$web" route flush cache
done
ip netns exec router /usr/bin/python3 "$HERE/udp.py" frag-needed $VIP $CLIENT $PORT "$port" 1200
wait_for sh -c "ip -n $pinned route get $CLIENT | grep -q 'mtu 1200'"
if ip -n "$table" route get $CLIENT | grep -q "mtu 1200"; then
	fail "the frag-needed for port $port went to $table, the table's pick, not to $pinned, which holds the flow"
fi
echo "port $port, pinned to $pinned (the table now says $table): the frag-needed reached $pinned"

# 6. Persistence: all the client's flows to the backend of its first.
ip netns exec lb nft -f "$PERSISTENT/hosts/lb/etc/nftables.d/dsrgen.nft"
FLOWS=500
ask persistent
backends=$(awk '{ print $2 }' "$WORK/persistent" | sort -u)
echo "with persistence, $FLOWS flows of one client went to: $backends"
[ "$(echo "$backends" | wc -l)" -eq 1 ] || fail "persistence: one client's flows went to several backends"

echo "PASS"
