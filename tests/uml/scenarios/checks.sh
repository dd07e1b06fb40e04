#!/bin/sh
# keepalived's HTTPS checks, what it does with a backend that fails them, and
# a port group, from the files dsrgen generated for tests/uml/fixtures/
# checks.yaml: one director, three backends.
#
# 1. HTTPS with `host` and `expect`: web1 answers /healthz with `status: ok`
#    over TLS, web2 with `status: degraded` over TLS, web3 in plain HTTP on
#    port 443. On port 443 (on_failure: remove) keepalived keeps web1 alone;
#    on port 444 (on_failure: drain, the same check on port 443) web2 and web3
#    stay in the table at weight 0.
# 2. Port group: ports 80 and 8080 are one firewall-mark service with
#    persistence (the marks: see below). Client A
#    asks on 80, client B on 8080, then A on 8080: A gets one backend for both
#    ports, B the next one (rr), which shows the scheduler moved on.
set -eu
# shellcheck source=tests/uml/lib.sh
. "$(dirname "$0")/../lib.sh"
TREE=$SCRATCH/${DSRGEN_UML_TREE:-checks}

hosts client lb1 web1 web2 web3
# Client B: a second address of the client host.
ip -n client addr add 198.51.100.101/24 dev eth0
for web in web1 web2 web3; do
	apply "$TREE" "$web" etc/sysctl.d/90-dsrgen.conf
	apply "$TREE" "$web" usr/local/sbin/dsrgen-vips
done

# One certificate for www.example.org, for every TLS server.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
	-subj /CN=www.example.org -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>"$WORK/openssl.log" ||
	fail "openssl could not make a certificate"

# serve HOST BODY TLS: on HOST, port 443 (over TLS when TLS is `tls`) answers
# /healthz with BODY, and ports 80 and 8080 answer with the host's name.
serve() {
	mkdir -p "$WORK/www-$1"
	echo "$1" >"$WORK/www-$1/index.html"
	echo "$2" >"$WORK/www-$1/healthz"
	ip netns exec "$1" /usr/bin/python3 -c '
import functools, http.server, ssl, sys, threading
folder, tls, cert, key = sys.argv[1:]
class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
handler = functools.partial(Handler, directory=folder)
servers = []
for port in (80, 8080, 443):
    server = http.server.ThreadingHTTPServer(("0.0.0.0", port), handler)
    if port == 443 and tls == "tls":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    servers.append(server)
for server in servers[1:]:
    threading.Thread(target=server.serve_forever, daemon=True).start()
servers[0].serve_forever()
' "$WORK/www-$1" "$3" "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/web-$1.log" 2>&1 &
	wait_for 10 ip netns exec "$1" curl --noproxy '*' -s --max-time 1 http://127.0.0.1:8080/
}
serve web1 "status: ok" tls
serve web2 "status: degraded" tls
serve web3 "status: ok" plain
ip netns exec web1 curl --noproxy '*' -sk --max-time 1 https://127.0.0.1/healthz | grep -q "status: ok" ||
	fail "web1 does not answer over TLS"
say "backends ready: web1 TLS ok, web2 TLS degraded, web3 plain HTTP on 443"

apply "$TREE" lb1 usr/local/sbin/dsrgen-vips
# The guest's kernel has nftables for bridges only (no ip, ip6 or inet
# family: CONFIG_NF_TABLES_INET and _IPV4 are off in Debian's UML build), so
# the marks of the generated dsrgen-marks.nft are set here by the same match
# in iptables (legacy). tests/integration/system.rs shows on the host's kernel
# that the nft file itself marks exactly these packets.
marks=$TREE/hosts/lb1/etc/nftables.d/dsrgen-marks.nft
if [ -e "$marks" ]; then
	# ip daddr ADDRESS PROTOCOL dport { P1, P2 } meta mark set MARK
	awk '$1 == "ip" && $2 == "daddr" {
		ports = $0; sub(/.*\{ */, "", ports); sub(/ *\}.*/, "", ports); gsub(/ /, "", ports)
		print $3, $4, ports, $NF }' "$marks" >"$WORK/marks"
	[ -s "$WORK/marks" ] || fail "no IPv4 mark in $marks"
	while read -r address protocol ports mark; do
		say "lb1: mark $address $protocol $ports as $mark (from dsrgen-marks.nft)"
		ip netns exec lb1 iptables-legacy -t mangle -A PREROUTING -d "$address" -p "$protocol" \
			-m multiport --dports "$ports" -j MARK --set-mark "$mark" || fail "iptables could not set the mark"
	done <"$WORK/marks"
fi
deploy "$TREE" lb1
start_keepalived lb1

# table_is SERVICE "ADDRESS:PORT WEIGHT ..." : the real servers of a service.
table_is() {
	[ "$(real_servers lb1 "$1" | sort | tr '\n' ' ')" = "$2" ]
}
# keepalived's first check after a start waits up to the interval (1 s),
# then a check takes at most the timeout (1 s): 5 s is ample.
wait_for 5 table_is 198.51.100.181:443 "198.51.100.11:443 1 "
say "443 (remove): web1 alone; web2's body and web3's plain HTTP failed the HTTPS check"
wait_for 5 table_is 198.51.100.181:444 "198.51.100.11:444 1 198.51.100.12:444 0 198.51.100.13:444 0 "
say "444 (drain): web2 and web3 kept at weight 0"
sleep 2
table_is 198.51.100.181:443 "198.51.100.11:443 1 " || fail "443 changed: $(real_servers lb1 198.51.100.181:443)"

# 2. The port group.
# ask ADDRESS LOCAL_PORT PORT: one request from the client's ADDRESS.
ask() {
	ip netns exec client curl --noproxy '*' -s --max-time 2 --interface "$1" --local-port "$2" "http://198.51.100.181:$3/"
}
a80=$(ask 198.51.100.100 43001 80) || fail "client A got no answer on port 80"
b8080=$(ask 198.51.100.101 43002 8080) || fail "client B got no answer on port 8080"
a8080=$(ask 198.51.100.100 43003 8080) || fail "client A got no answer on port 8080"
say "client A on 80: $a80; client B on 8080: $b8080; client A on 8080: $a8080"
[ "$a80" = "$a8080" ] || fail "client A was sent to $a80 on port 80 but to $a8080 on port 8080"
[ "$a80" != "$b8080" ] || fail "client B got client A's backend: the scheduler did not move on, the check proves nothing"
ip netns exec lb1 ipvsadm -Ln | grep -q '^FWM' || fail "no firewall-mark service in the IPVS table"
say "client A stays on $a80 across ports 80 and 8080 (one firewall-mark service)"
echo PASS
