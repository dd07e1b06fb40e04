#!/bin/sh
# End-to-end proof of direct server return with files dsrgen generated from
# fixtures/valid/nftables.yaml (TESTING.md). Run by tests/integration/system.rs
# as:
#   unshare --pid --fork --mount-proc --mount --net sh tests/e2e/dsr.sh OUT
# so that every namespace and process it creates dies with it. Namespaces
# client, lb, web1, web2 hang off a bridge in the outer namespace; the
# balancer and the backends are configured only with the generated files.
set -eu

OUT=$1
VIP=198.51.100.181
LB_MAC=02:00:00:00:00:02
WEB1_MAC=02:00:00:00:00:11
WEB2_MAC=02:00:00:00:00:12
WORK=$(mktemp -d)

# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
for host in client lb web1 web2; do
	add_host "$host"
done
ip -n client link set eth0 address 02:00:00:00:00:99
ip -n lb link set eth0 address $LB_MAC
ip -n web1 link set eth0 address $WEB1_MAC
ip -n web2 link set eth0 address $WEB2_MAC
ip -n client addr add 198.51.100.100/24 dev eth0
ip -n lb addr add 198.51.100.2/24 dev eth0
ip -n web1 addr add 198.51.100.11/24 dev eth0
ip -n web2 addr add 198.51.100.12/24 dev eth0
for host in client lb web1 web2; do
	ip -n "$host" link set eth0 up
	# The same client ports are used twice below: keep no TIME_WAIT state
	# that would refuse or confuse the second connection.
	ip netns exec "$host" sysctl -q -w net.ipv4.tcp_max_tw_buckets=0
done

# vips HOST VERB: the host's dsrgen-vips from OUT (tests/e2e/lib.sh).
vips() {
	vips_from "$OUT" "$1" "$2"
}

# The balancer: its cluster address on eth0, and the nftables table.
vips lb up
ip netns exec lb nft -f "$OUT/hosts/lb/etc/nftables.d/dsrgen.nft"

# The backends: loopback script (VIP on lo, scope host), and a web server
# answering with the backend's name.
for web in web1 web2; do
	vips "$web" up
	mkdir -p "$WORK/$web"
	echo "$web" >"$WORK/$web/index.html"
	ip netns exec "$web" /usr/bin/python3 -m http.server 80 --bind 0.0.0.0 \
		--directory "$WORK/$web" >"$WORK/$web.log" 2>&1 &
done
for web in web1 web2; do
	wait_for ip netns exec "$web" curl --noproxy '*' -s --max-time 1 http://127.0.0.1/
done

# MAC addresses that answer ARP for the VIP, broadcast requests throughout (-b)
# so that every host that would answer is heard.
arp_answers() {
	ip netns exec client arping -b -c 4 -w 1 -I eth0 $VIP 2>/dev/null |
		sed -n 's/.*reply from [0-9.]* \[\([0-9a-fA-F:]*\)\].*/\1/p' | tr 'A-F' 'a-f' | sort -u
}

# 1. Negative control: without the backends' ARP settings (as if the sysctl
#    fragment were missing), the backends answer ARP for the VIP too.
for web in web1 web2; do
	for conf in all eth0; do
		ip netns exec "$web" sh -c "echo 0 > /proc/sys/net/ipv4/conf/$conf/arp_ignore; echo 0 > /proc/sys/net/ipv4/conf/$conf/arp_announce"
	done
done
answers=$(arp_answers)
echo "ARP answers without the sysctl fragment: $(echo "$answers" | tr "\n" " ")"
[ "$(echo "$answers" | wc -l)" -ge 2 ] || fail "negative control: only one MAC answered ARP without the fragment"

# 2. With the generated sysctl fragment, the balancer alone answers.
for web in web1 web2; do
	ip netns exec "$web" sysctl -q -p "$OUT/hosts/$web/etc/sysctl.d/90-dsrgen.conf"
done
ip -n client neigh flush all
answers=$(arp_answers)
echo "ARP answers with the sysctl fragment: $(echo "$answers" | tr "\n" " ")"
[ "$answers" = "$LB_MAC" ] || fail "ARP for $VIP answered by: $answers (want $LB_MAC alone)"

# 3. Data path: requests from distinct client ports reach both backends, and
#    every reply comes straight from a backend's MAC with the VIP as source.
ip -n client neigh flush all
ip netns exec client tcpdump -i eth0 -e -n -l "tcp and src host $VIP" >"$WORK/replies" 2>"$WORK/tcpdump.log" &
tcpdump_pid=$!
wait_for grep -q "listening on" "$WORK/tcpdump.log"
port=40001
while [ $port -le 40016 ]; do
	body=$(ip netns exec client curl --noproxy '*' -s --max-time 2 --local-port $port http://$VIP/) ||
		fail "request from port $port got no answer"
	echo "$port $body" >>"$WORK/served"
	port=$((port + 1))
done
# tcpdump prints each packet as it sees it (-l); what it has printed is enough.
kill $tcpdump_pid
wait $tcpdump_pid 2>/dev/null || true
echo "served:"; cat "$WORK/served"
grep -q ' web1$' "$WORK/served" || fail "web1 served nothing"
grep -q ' web2$' "$WORK/served" || fail "web2 served nothing"
neigh=$(ip -n client neigh show $VIP)
echo "client's neighbour entry for the VIP: $neigh"
echo "$neigh" | grep -qi "lladdr $LB_MAC" || fail "the client's neighbour entry for $VIP is not the balancer's MAC"
reply_macs=$(awk '{print $2}' "$WORK/replies" | sort -u)
echo "source MACs of replies from $VIP: $(echo "$reply_macs" | tr "\n" " ")"
[ -n "$reply_macs" ] || fail "tcpdump saw no reply"
for mac in $reply_macs; do
	case $mac in
	"$WEB1_MAC" | "$WEB2_MAC") ;;
	*) fail "a reply from $VIP came from $mac, not from a backend" ;;
	esac
done

# 4. Negative control: on a backend whose loopback script was not run, the
#    flows sent to it die; the others still work.
vips web2 down
mkdir "$WORK/after"
pids=
while read -r port body; do
	(
		# All at once, so that the dead ones cost one timeout: long enough
		# for a busy machine to start 16 clients and serve them.
		if ip netns exec client curl --noproxy '*' -s --max-time 5 --local-port "$port" http://$VIP/ >/dev/null; then
			echo "$port $body answered" >"$WORK/after/$port"
		else
			echo "$port $body died" >"$WORK/after/$port"
		fi
	) &
	pids="$pids $!"
done <"$WORK/served"
for pid in $pids; do
	wait "$pid"
done
cat "$WORK"/after/* >"$WORK/after-down"
echo "after web2's dsrgen-vips down:"; cat "$WORK/after-down"
if grep -q ' web2 answered$' "$WORK/after-down"; then fail "a flow to web2 survived without its VIP"; fi
if grep -q ' web1 died$' "$WORK/after-down"; then fail "a flow to web1 died"; fi
echo "PASS"
