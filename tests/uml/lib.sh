# Sourced by the scenarios of tests/uml/scenarios, inside the user-mode Linux
# guest (tests/uml/init.sh). POSIX sh.
#
# Hosts are network namespaces hanging off one bridge in the guest's own
# namespace, with documentation addresses only. A host's files are "deployed"
# by copying its folder of a tree dsrgen built into /tmp/hosts/HOST, and a
# command runs "on" a host in a view where those files sit at their real paths
# (overlays on /etc and /usr, a /run of its own): so the reload commands of
# manifest.json run as they are written.

# shellcheck disable=SC2034 # for the scenarios
SCRATCH=$1
WORK=/tmp/work
STARTED_MS=$(($(date +%s%N) / 1000000))
mkdir -p "$WORK" /tmp/hosts /run/hosts

# Print the logs of the daemons, then fail.
fail() {
	echo "FAIL: $*"
	for log in "$WORK"/*.log; do
		[ -s "$log" ] || continue
		echo "--- $log (last 30 lines)"
		tail -n 30 "$log"
	done
	exit 1
}

# Milliseconds since the epoch.
now_ms() {
	echo $(($(date +%s%N) / 1000000))
}

# Print a line with the time since the scenario started.
say() {
	echo "[$(($(now_ms) - STARTED_MS)) ms] $*"
}

# wait_for SECONDS COMMAND...: poll until COMMAND succeeds.
wait_for() {
	limit=$1
	shift
	deadline=$(($(now_ms) + limit * 1000))
	until "$@" >/dev/null 2>&1; do
		[ "$(now_ms)" -lt "$deadline" ] || fail "timed out after $limit s waiting for: $*"
		sleep 0.05
	done
}

# The wiring of the segment, which dsrgen does not generate: each host's own
# address (as the inventories of tests/uml/fixtures give it) and a fixed MAC.
address_of() {
	case $1 in
	client) echo 198.51.100.100 ;;
	lb1) echo 198.51.100.2 ;;
	lb2) echo 198.51.100.3 ;;
	lb3) echo 198.51.100.4 ;;
	web1) echo 198.51.100.11 ;;
	web2) echo 198.51.100.12 ;;
	web3) echo 198.51.100.13 ;;
	*) fail "unknown host $1" ;;
	esac
}
mac_of() {
	case $1 in
	client) echo 02:00:00:00:00:99 ;;
	lb1) echo 02:00:00:00:00:02 ;;
	lb2) echo 02:00:00:00:00:03 ;;
	lb3) echo 02:00:00:00:00:04 ;;
	web1) echo 02:00:00:00:00:11 ;;
	web2) echo 02:00:00:00:00:12 ;;
	web3) echo 02:00:00:00:00:13 ;;
	*) fail "unknown host $1" ;;
	esac
}

# hosts NAME...: a namespace per host, its eth0 on the bridge br0.
hosts() {
	if [ ! -e /sys/class/net/br0 ]; then
		ip link add br0 type bridge
		ip link set br0 up
	fi
	for host in "$@"; do
		ip netns add "$host"
		ip link add "v-$host" type veth peer name eth0 netns "$host"
		ip link set "v-$host" master br0 up
		ip -n "$host" link set lo up
		ip -n "$host" link set eth0 address "$(mac_of "$host")"
		ip -n "$host" addr add "$(address_of "$host")/24" dev eth0
		ip -n "$host" link set eth0 up
		# Client ports are reused: no TIME_WAIT state to get in the way.
		ip netns exec "$host" sysctl -q -w net.ipv4.tcp_max_tw_buckets=0
		mkdir -p "/tmp/hosts/$host" "/run/hosts/$host"
	done
}

# deploy TREE HOST: copy the host's generated files to where its view finds
# them, over what an earlier deploy left.
deploy() {
	cp -R "$1/hosts/$2/." "/tmp/hosts/$2/"
}

# on HOST COMMAND: run the shell COMMAND in HOST's namespace and view. There
# is no systemd in the guest: `systemctl` does what the Debian unit would,
# `networkctl reload` starts networkd.
on() {
	# shellcheck disable=SC2016 # expanded by the inner shell
	ip netns exec "$1" sh -c '
		host=$1
		for top in etc usr; do
			[ -d "/tmp/hosts/$host/$top" ] || continue
			mount -t overlay overlay -o "lowerdir=/tmp/hosts/$host/$top:/$top" "/$top"
		done
		mount --bind "/run/hosts/$host" /run
		systemctl() {
			case "$*" in
			# keepalived.service: ExecReload=/bin/kill -HUP $MAINPID
			"reload keepalived") kill -HUP "$(cat /run/keepalived.pid)" ;;
			# No unit runs here; nothing to load.
			daemon-reload) ;;
			*) echo "systemctl $*: not emulated in the guest" >&2; return 1 ;;
			esac
		}
		# networkctl asks a running networkd over D-Bus, which the guest has
		# not: start networkd instead (TESTING.md: a read-only /sys makes it
		# stop waiting for udev; the vendor folder is hidden so that only the
		# deployed files count).
		networkctl() {
			[ "$*" = reload ] && [ ! -e /run/networkd.pid ] || {
				echo "networkctl $*: not emulated in the guest" >&2
				return 1
			}
			mount -o remount,bind,ro /sys
			mount -t tmpfs tmpfs /usr/lib/systemd/network
			/lib/systemd/systemd-networkd >>"/tmp/work/networkd-$host.log" 2>&1 &
			echo $! >/run/networkd.pid
		}
		eval "$2"' on "$1" "$2"
}

# reload_of TREE HOST PATH: the command manifest.json gives for the file.
reload_of() {
	/usr/bin/python3 -c '
import json, sys
tree, host, path = sys.argv[1:]
for f in json.load(open(tree + "/manifest.json"))["files"]:
    if f["host"] == host and f["path"] == path:
        print(f["reload"])
        break
else:
    sys.exit("manifest.json lists no " + path + " for " + host)
' "$@"
}

# apply TREE HOST PATH: deploy the host's files and run the file's reload
# command on the host.
apply() {
	command=$(reload_of "$@") || fail "no reload command for $3 on $2"
	deploy "$1" "$2"
	say "$2: $command"
	on "$2" "$command" >>"$WORK/apply.log" 2>&1 || fail "$2: \`$command\` failed"
}

# start_web HOST...: on each host, an HTTP/1.1 server on port 80 answering with the host's name
# (keep-alive, so that one connection can carry several requests).
start_web() {
	for host in "$@"; do
		mkdir -p "$WORK/www-$host"
		echo "$host" >"$WORK/www-$host/index.html"
		ip netns exec "$host" /usr/bin/python3 -c '
import functools, http.server, sys
class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
handler = functools.partial(Handler, directory=sys.argv[1])
http.server.ThreadingHTTPServer(("0.0.0.0", 80), handler).serve_forever()
' "$WORK/www-$host" >"$WORK/web-$host.log" 2>&1 &
		echo $! >"$WORK/web-$host.pid"
	done
	for host in "$@"; do
		wait_for 10 ip netns exec "$host" curl --noproxy '*' -s --max-time 1 http://127.0.0.1/
	done
}

# backends TREE HOST...: on each backend, its ARP settings and addresses from
# TREE (with the manifest's reload commands), then its web server.
backends() {
	tree=$1
	shift
	for web in "$@"; do
		apply "$tree" "$web" etc/sysctl.d/90-dsrgen.conf
		apply "$tree" "$web" usr/local/sbin/dsrgen-vips
	done
	start_web "$@"
}

stop_web() {
	kill "$(cat "$WORK/web-$1.pid")"
	wait_for 5 not ip netns exec "$1" curl --noproxy '*' -s --max-time 1 http://127.0.0.1/
}

# wait_for_quietly SECONDS COMMAND...: as wait_for, but only says whether
# COMMAND succeeded in time.
wait_for_quietly() {
	limit=$1
	shift
	deadline=$(($(now_ms) + limit * 1000))
	until "$@" >/dev/null 2>&1; do
		[ "$(now_ms)" -lt "$deadline" ] || return 1
		sleep 0.05
	done
}

not() {
	! "$@"
}

# get PORT [URL]: one request from the client, from local port PORT; prints
# the body (the name of the backend that answered).
get() {
	ip netns exec client curl --noproxy '*' -s --max-time 2 --local-port "$1" "${2:-http://198.51.100.181/}"
}

# capture_replies FILE: tcpdump on the client, printing TCP packets from the
# VIP with their MACs, until stop_capture.
capture_replies() {
	ip netns exec client tcpdump -i eth0 -e -n -l "tcp and src host 198.51.100.181" >"$1" 2>"$WORK/tcpdump.err" &
	echo $! >"$WORK/tcpdump.pid"
	wait_for 5 grep -q "listening on" "$WORK/tcpdump.err"
}
stop_capture() {
	kill "$(cat "$WORK/tcpdump.pid")"
	wait "$(cat "$WORK/tcpdump.pid")" 2>/dev/null || true
}

# source_macs FILE: the source MACs of the packets captured in FILE.
source_macs() {
	# (mawk, Debian's awk, has no {n} in regular expressions.)
	awk 'length($2) == 17 && $2 ~ /^[0-9a-f:]+$/ {print $2}' "$1" | sort -u
}

# MAC addresses that answer ARP for ADDRESS, broadcast throughout (-b) so that
# every host that would answer is heard.
arp_answers() {
	ip netns exec client arping -b -c 3 -w 1 -I eth0 "$1" 2>/dev/null |
		sed -n 's/.*reply from [0-9.]* \[\([0-9a-fA-F:]*\)\].*/\1/p' | tr 'A-F' 'a-f' | sort -u
}

# start_keepalived HOST: keepalived in HOST's view, as keepalived.service
# starts it (ExecStart=/usr/sbin/keepalived --dont-fork), logging to a file
# (there is no syslog in the guest).
start_keepalived() {
	: >"$WORK/keepalived-$1.log"
	on "$1" 'exec keepalived --dont-fork --log-console --no-syslog --log-detail' >>"$WORK/keepalived-$1.log" 2>&1 &
	wait_for 5 test -s "/run/hosts/$1/keepalived.pid"
	wait_for 10 grep -q 'Startup complete' "$WORK/keepalived-$1.log"
	# keepalived reads past what it does not understand, with a warning.
	if grep -i -E 'unknown|warning|error|invalid' "$WORK/keepalived-$1.log"; then
		fail "keepalived on $1 complained about its configuration"
	fi
}

# stop_keepalived HOST: what `systemctl stop keepalived` does (SIGTERM to the
# main process, then wait for it to end).
stop_keepalived() {
	pid=$(cat "/run/hosts/$1/keepalived.pid")
	kill "$pid"
	wait_for 10 not kill -0 "$pid"
}

# holds HOST ADDRESS: whether HOST's eth0 holds ADDRESS.
holds() {
	ip -n "$1" -o -4 addr show dev eth0 | grep -q " $2/"
}

# real_servers HOST SERVICE: the real servers of an IPVS service on HOST, one
# "address:port weight" a line.
real_servers() {
	ip netns exec "$1" ipvsadm -Ln -t "$2" | awk '$1 == "->" && $2 != "RemoteAddress:Port" {print $2, $4}'
}
