#!/bin/sh
# VIPs on a dummy device, from the files dsrgen generated for
# tests/uml/fixtures/dummy.yaml. web1 gets its VIP from the generated
# script (which creates the device), web2 from systemd-networkd reading the
# generated .netdev and .network; both apply the sysctl fragment. Each must
# hold the VIP on a dummy vips0, /32, scope host, label vips0:1; requests
# through the director reach both; only the director answers ARP for the
# VIP, and without the fragment's settings the backends answer too (a
# negative control).
set -eu
# shellcheck source=tests/uml/lib.sh
. "$(dirname "$0")/../lib.sh"
TREE=$SCRATCH/dummy
VIP=198.51.100.181

hosts client lb1 web1 web2
apply "$TREE" lb1 usr/local/sbin/dsrgen-vips
apply "$TREE" lb1 etc/ipvsadm.rules
apply "$TREE" web1 etc/sysctl.d/90-dsrgen.conf
apply "$TREE" web1 usr/local/sbin/dsrgen-vips
apply "$TREE" web2 etc/sysctl.d/90-dsrgen.conf
apply "$TREE" web2 etc/systemd/network/90-dsrgen-vips0.netdev
command=$(reload_of "$TREE" web2 etc/systemd/network/90-dsrgen-vips0.network)
[ "$command" = "networkctl reload" ] || fail "web2's .network reloads with \`$command\`"

# on_vips0 HOST: the IPv4 addresses on HOST's vips0: address, scope, label.
on_vips0() {
	ip -n "$1" -o -4 addr show dev vips0 | awk '{sub(/\\$/, "", $7); print $4, $5, $6, $7}'
}

# holds_vip HOST: vips0 is a dummy device holding exactly the VIP as generated.
holds_vip() {
	ip -n "$1" -d link show dev vips0 | grep -qw dummy &&
		[ "$(on_vips0 "$1")" = "$VIP/32 scope host vips0:1" ]
}
wait_for 10 holds_vip web1
wait_for 10 holds_vip web2
for web in web1 web2; do
	say "$web: dummy vips0 holds $(on_vips0 "$web")"
done
start_web web1 web2

port=43001
: >"$WORK/served"
while [ $port -le 43004 ]; do
	get $port >>"$WORK/served" || fail "request from port $port failed"
	port=$((port + 1))
done
served=$(sort -u "$WORK/served" | tr '\n' ' ')
say "served through lb1: $served"
[ "$served" = "web1 web2 " ] || fail "not both backends served"

answers=$(arp_answers $VIP | tr '\n' ' ')
say "ARP answers for the VIP: $answers"
[ "$answers" = "$(mac_of lb1) " ] || fail "ARP for the VIP answered by $answers, not by lb1 alone"

# Negative control: without the fragment's settings, the backends answer ARP
# for the VIP held on their dummy device.
for web in web1 web2; do
	for conf in all eth0; do
		ip netns exec "$web" sh -c "echo 0 >/proc/sys/net/ipv4/conf/$conf/arp_ignore; echo 0 >/proc/sys/net/ipv4/conf/$conf/arp_announce"
	done
done
ip -n client neigh flush all
answers=$(arp_answers $VIP | tr '\n' ' ')
say "ARP answers without the sysctl settings: $answers"
[ "$(echo "$answers" | wc -w)" -eq 3 ] || fail "negative control: without arp_ignore, not all three hosts answered ARP"
echo PASS
