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

# vips_from TREE HOST VERB: the host's dsrgen-vips from TREE, with a /run of
# the host's own (where the script records the addresses it added), so that
# hosts do not share one record, nor write this machine's. WORK is the
# caller's scratch folder.
vips_from() {
	mkdir -p "$WORK/run-$2"
	# shellcheck disable=SC2016 # expanded by the inner shell
	ip netns exec "$2" unshare --mount sh -c 'mount --bind "$1" /run && exec "$2" "$3"' \
		sh "$WORK/run-$2" "$1/hosts/$2/usr/local/sbin/dsrgen-vips" "$3"
}
