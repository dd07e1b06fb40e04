#!/bin/sh
# keepalived's health checks and a drained backend, from the files dsrgen
# generated for tests/uml/fixtures/health.yaml and health-drained.yaml: one
# director, three backends, TCP checks.
#
# 1. Drain: deploying the drained tree and running its reload command sets
#    web2's weight to 0; new connections avoid web2, while connections opened
#    before the change, web2's among them, keep working.
# 2. Health: when web1's server stops, keepalived removes web1 from the IPVS
#    table within the check interval plus timeouts (the fixture checks every
#    second), and puts it back when the server returns.
set -eu
# shellcheck source=tests/uml/lib.sh
. "$(dirname "$0")/../lib.sh"
TREE=$SCRATCH/health
DRAINED=$SCRATCH/health-drained
SERVICE=198.51.100.181:80

hosts client lb1 web1 web2 web3
for web in web1 web2 web3; do
	apply "$TREE" "$web" etc/sysctl.d/90-dsrgen.conf
	apply "$TREE" "$web" usr/local/sbin/dsrgen-vips
done
start_web web1 web2 web3
apply "$TREE" lb1 usr/local/sbin/dsrgen-vips
deploy "$TREE" lb1
start_keepalived lb1

# table_is "ADDRESS:PORT WEIGHT..." : the real servers of the service.
table_is() {
	[ "$(real_servers lb1 $SERVICE | sort | tr '\n' ' ')" = "$1" ]
}
ALL="198.51.100.11:80 1 198.51.100.12:80 1 198.51.100.13:80 1 "
wait_for 5 table_is "$ALL"
say "keepalived put the three real servers in place"

# held_lines PATTERN COUNT: hold.py printed COUNT lines matching PATTERN.
held_lines() {
	[ "$(grep -c "$1" "$WORK/held")" -eq "$2" ]
}

# requests FIRST_PORT COUNT: who served requests from COUNT client ports.
requests() {
	port=$1
	: >"$WORK/served"
	while [ "$port" -lt $(($1 + $2)) ]; do
		get "$port" >>"$WORK/served" || fail "request from port $port failed"
		port=$((port + 1))
	done
	sort "$WORK/served" | uniq -c | awk '{printf "%s:%s ", $2, $1}'
}

# 1. Drain.
rm -f "$WORK/go"
ip netns exec client /usr/bin/python3 "$(dirname "$0")/../hold.py" 198.51.100.181 42001 3 "$WORK/go" >"$WORK/held" 2>"$WORK/hold.log" &
wait_for 10 held_lines ' first ' 3
echo "connections held open:"
cat "$WORK/held"
grep -q ' first web2$' "$WORK/held" || fail "no held connection went to web2"
changed=$(now_ms)
apply "$DRAINED" lb1 etc/keepalived/keepalived.conf
wait_for 10 table_is "198.51.100.11:80 1 198.51.100.12:80 0 198.51.100.13:80 1 "
say "web2's weight was 0 $(($(now_ms) - changed)) ms after the reload"
served=$(requests 42101 8)
say "new connections after the drain: $served"
case $served in
*web2*) fail "a new connection went to the drained web2" ;;
esac
touch "$WORK/go"
wait_for 10 held_lines ' second' 3
cat "$WORK/held"
for port in 42001 42002 42003; do
	first=$(sed -n "s/^$port first //p" "$WORK/held")
	second=$(sed -n "s/^$port second //p" "$WORK/held")
	[ "$first" = "$second" ] || fail "the connection from port $port, first served by $first, then got: $second"
done
say "connections opened before the drain still work, web2's included"

# 2. Health checks, on the undrained tree, with the timing dsrgen wrote.
deploy "$TREE" lb1
conf=/tmp/hosts/lb1/etc/keepalived/keepalived.conf
grep -q delay_loop "$conf" || fail "the generated keepalived.conf sets no delay_loop"
# A new check interval needs a restart: a reload keeps the checkers' timers.
stop_keepalived lb1
start_keepalived lb1
wait_for 5 table_is "$ALL"
# The bound, from the deployed file: the interval, then the check and its
# retries, each of which may take the connect timeout, with delay_before_retry
# between them; the first check after a start waits a random warm-up of up to
# the interval. Plus 1 s of slack.
value() {
	awk -v key="$1" '$1 == key {print $2; exit}' "$conf"
}
interval=$(value delay_loop)
timeout=$(value connect_timeout)
retry=$(value retry)
delay=$(value delay_before_retry)
bound=$((interval + interval + (retry + 1) * timeout + retry * delay + 1))
say "check interval ${interval} s, connect_timeout ${timeout} s, retry ${retry}, delay_before_retry ${delay} s: removal bound ${bound} s"

stopped=$(now_ms)
stop_web web1
wait_for $bound table_is "198.51.100.12:80 1 198.51.100.13:80 1 "
say "web1 left the IPVS table $(($(now_ms) - stopped)) ms after its server stopped"
served=$(requests 42201 6)
say "requests while web1 is down: $served"
case $served in
*web1*) fail "web1 served a request while down" ;;
esac
restarted=$(now_ms)
start_web web1
wait_for $bound table_is "$ALL"
say "web1 was back in the IPVS table $(($(now_ms) - restarted)) ms after its server started"
served=$(requests 42301 6)
say "requests with web1 back: $served"
case $served in
*web1*) ;;
*) fail "web1 served nothing after it came back" ;;
esac
echo PASS
