# Shared by the end-to-end scripts, which source it: failing, polling, and a
# bridge br0 in the outer namespace with one namespace per host on it.

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

# Poll until "$@" succeeds, for at most 5 s.
wait_for() {
	deadline=$(($(date +%s) + 5))
	until "$@" >/dev/null 2>&1; do
		[ "$(date +%s)" -lt "$deadline" ] || fail "timed out waiting for: $*"
		sleep 0.05
	done
}

# Named network namespaces live in a tmpfs of this mount namespace only.
mkdir -p /run/netns
mount -t tmpfs tmpfs /run/netns

ip link set lo up
ip link add br0 type bridge
ip link set br0 up

# A namespace for host $1, its eth0 on br0.
add_host() {
	ip netns add "$1"
	ip link add "v-$1" type veth peer name eth0 netns "$1"
	ip link set "v-$1" master br0 up
	ip -n "$1" link set lo up
}
