#!/bin/sh
# ipvsadm applied by reconciling the live table (usr/local/sbin/dsrgen-ipvsadm,
# the manifest's reload command for etc/ipvsadm.rules), on the trees dsrgen
# built from tests/uml/fixtures/reconcile.yaml (A) and reconcile-changed.yaml
# (B: a weight of port 80, the scheduler of 443 and the persistence of the
# IPv6 service change, port 8080 goes):
#   - a second apply of the same tree runs no ipvsadm command but `-Sn`;
#   - two connections opened through the director before the applies carry
#     a second request after them;
#   - new connections opened in a loop while the director goes B, A, B are
#     never refused; and, the negative control, with the old reload
#     (`ipvsadm-restore`, a flush then a load) they are;
#   - a service made by hand survives every apply (and not the flush);
#   - port 8080, gone from B, is gone from the table;
#   - a real server switched to masquerading by hand is put back to -g;
#   - what the apply relies on in `ipvsadm -R` (its batch): no flush, a line
#     the kernel refuses does not stop the lines after it and shows only on
#     stderr (the exit status is the last line's), an illegal value stops
#     the batch there with exit 2.
# Leaves in SCRATCH: `saved` (ipvsadm -Sn after the last apply of B), `churn`
# (the connection counts of both loops).
set -eu
# shellcheck source=tests/uml/lib.sh
. "$(dirname "$0")/../lib.sh"
A=$SCRATCH/reconcile
B=$SCRATCH/reconcile-changed
VIP=198.51.100.181

hosts client lb1 web1 web2
say "namespaces ready"

# A service dsrgen knows nothing of, made before its first apply.
ip netns exec lb1 ipvsadm -A -t 198.51.100.190:7 -s rr
ip netns exec lb1 ipvsadm -a -t 198.51.100.190:7 -r 198.51.100.11:7 -g -w 1

# ipvsadm -R on this kernel: RESTORE LINES... feeds the lines to one
# `ipvsadm -R` on lb1 and says its exit status and stderr.
restore() {
	if printf '%s\n' "$@" | ip netns exec lb1 ipvsadm -R 2>"$WORK/restore.err"; then
		status=0
	else
		status=$?
	fi
	echo "ipvsadm -R exit $status, stderr: $(tr '\n' ' ' <"$WORK/restore.err")"
}
# A real server for a service that does not exist, between two adds.
rc=$(restore "-A -t 198.51.100.191:80 -s rr" \
	"-a -t 198.51.100.199:80 -r 198.51.100.11:80 -g -w 1" \
	"-A -t 198.51.100.192:80 -s rr")
echo "$rc"
case $rc in "ipvsadm -R exit 0, stderr: "*"Service not defined"*) ;; *) fail "-R with a refused line in the middle: $rc" ;; esac
ip netns exec lb1 ipvsadm -Ln -t 198.51.100.192:80 >/dev/null || fail "-R stopped at the refused line"
# An illegal weight, between two adds.
rc=$(restore "-A -t 198.51.100.193:80 -s rr" \
	"-a -t 198.51.100.193:80 -r 198.51.100.11:80 -g -w heavy" \
	"-A -t 198.51.100.194:80 -s rr")
echo "$rc"
case $rc in "ipvsadm -R exit 2, "*) ;; *) fail "-R with an illegal weight: $rc" ;; esac
ip netns exec lb1 ipvsadm -Ln -t 198.51.100.193:80 >/dev/null || fail "-R did not run the line before the illegal one"
ip netns exec lb1 ipvsadm -Ln -t 198.51.100.194:80 >/dev/null 2>&1 && fail "-R went on past an illegal weight"
ip netns exec lb1 ipvsadm -Ln -t 198.51.100.190:7 | grep -q 198.51.100.11:7 || fail "-R flushed the table"
for port in 191 192 193; do
	ip netns exec lb1 ipvsadm -D -t 198.51.100.$port:80
done
say "ipvsadm -R: no flush, goes on past a refused line (exit of the last), stops at an illegal value (exit 2)"

apply "$A" lb1 usr/local/sbin/dsrgen-vips
apply "$A" lb1 etc/ipvsadm.rules
echo "owned after the first apply:"
cat /run/hosts/lb1/dsrgen-ipvsadm/owned
grep -q 198.51.100.190 /run/hosts/lb1/dsrgen-ipvsadm/owned && fail "the hand-made service was recorded as dsrgen's"
for web in web1 web2; do
	apply "$A" "$web" etc/sysctl.d/90-dsrgen.conf
	apply "$A" "$web" usr/local/sbin/dsrgen-vips
done
start_web web1 web2
say "backends ready"

RELOAD=$(reload_of "$A" lb1 etc/ipvsadm.rules)
[ "$RELOAD" = "/usr/local/sbin/dsrgen-ipvsadm apply" ] || fail "the manifest reloads ipvsadm.rules with: $RELOAD"

# Every ipvsadm command the apply runs, through a shim first on its PATH;
# the lines -R reads are logged after it.
mkdir -p "$WORK/shim"
cat >"$WORK/shim/ipvsadm" <<SHIM
#!/bin/sh
echo "\$*" >>"$WORK/ipvsadm-calls"
if [ "\$1" = -R ]; then
	tee -a "$WORK/ipvsadm-calls" | $(command -v ipvsadm) "\$@"
	exit
fi
exec $(command -v ipvsadm) "\$@"
SHIM
chmod +x "$WORK/shim/ipvsadm"
# traced TREE: apply TREE on lb1 with the shim; its ipvsadm calls land in
# $WORK/ipvsadm-calls, its output in $WORK/traced.
traced() {
	deploy "$1" lb1
	: >"$WORK/ipvsadm-calls"
	on lb1 "PATH=$WORK/shim:\$PATH; $RELOAD" >"$WORK/traced" 2>&1 || {
		cat "$WORK/traced"
		fail "\`$RELOAD\` failed"
	}
}

# (e) The second apply of one tree changes nothing and runs nothing but -Sn.
ip netns exec lb1 ipvsadm -Sn >"$WORK/before"
traced "$A"
ip netns exec lb1 ipvsadm -Sn >"$WORK/after"
echo "ipvsadm calls of the second apply: $(cat "$WORK/ipvsadm-calls")"
[ "$(cat "$WORK/ipvsadm-calls")" = "-Sn" ] || fail "the second apply ran more than -Sn"
[ ! -s "$WORK/traced" ] || fail "the second apply said: $(cat "$WORK/traced")"
cmp -s "$WORK/before" "$WORK/after" || fail "the second apply changed the table"

# (a) Connections held open across the applies.
ip netns exec client /usr/bin/python3 "$(dirname "$0")/../hold.py" $VIP 42001 2 "$WORK/go" >"$WORK/held" 2>"$WORK/hold.log" &
wait_for 10 sh -c "[ \"\$(grep -c ' first ' '$WORK/held')\" -eq 2 ]"
echo "connections held open:"
cat "$WORK/held"

# churn NAME ROUNDS COMMAND: new connections to VIP:80 in a loop on the
# client while lb1 applies B, A, B, ... (ROUNDS applies) with COMMAND; the
# counts go to $SCRATCH/churn as "NAME attempts N failures M".
churn() {
	rm -f "$WORK/stop" "$WORK/started"
	ip netns exec client /usr/bin/python3 "$(dirname "$0")/../churn.py" $VIP 80 "$WORK/stop" "$WORK/started" >"$WORK/churn-$1" 2>&1 &
	pid=$!
	wait_for 10 test -e "$WORK/started"
	round=1
	started=$(now_ms)
	while [ $round -le "$2" ]; do
		if [ $((round % 2)) = 1 ]; then tree=$B; else tree=$A; fi
		deploy "$tree" lb1
		on lb1 "$3" >>"$WORK/churn-applies-$1" 2>&1 || fail "$1: \`$3\` failed"
		round=$((round + 1))
	done
	took=$(($(now_ms) - started))
	touch "$WORK/stop"
	wait "$pid" || fail "churn.py failed: $(cat "$WORK/churn-$1")"
	counts=$(head -n 1 "$WORK/churn-$1")
	say "$1: $2 applies in $took ms; new connections meanwhile: $counts"
	sed 1d "$WORK/churn-$1"
	echo "$1 $counts" >>"$SCRATCH/churn"
}

# (b) New connections during applies of the reconcile: never refused.
churn reconcile 3 "$RELOAD"
echo "commands run by the 3 applies (B, A, B):"
cat "$WORK/churn-applies-reconcile"
grep -q "reconcile attempts [0-9]* failures 0\$" "$SCRATCH/churn" || fail "a new connection failed during the reconciling applies"

# (a) The held connections carry a second request, to the same backend.
touch "$WORK/go"
wait_for 10 sh -c "[ \"\$(grep -c ' second' '$WORK/held')\" -eq 2 ]"
cat "$WORK/held"
grep -q 'second failed' "$WORK/held" && fail "a connection opened before the applies broke"
for port in 42001 42002; do
	first=$(awk -v p=$port '$1 == p && $2 == "first" {print $3}' "$WORK/held")
	second=$(awk -v p=$port '$1 == p && $2 == "second" {print $3}' "$WORK/held")
	[ "$first" = "$second" ] || fail "connection from $port: $first, then $second"
done

# (c) The hand-made service is still there, with its real server; (d) 8080,
# gone from B, is gone.
ip netns exec lb1 ipvsadm -Ln -t 198.51.100.190:7 | grep -q '198.51.100.11:7' || fail "the hand-made service is gone"
ip netns exec lb1 ipvsadm -Ln -t $VIP:8080 >/dev/null 2>&1 && fail "port 8080, gone from the inventory, is still in the table"
real_servers lb1 $VIP:80 | grep -q '^198.51.100.12:80 3$' || fail "web2's new weight on port 80 is not in the table"

# A real server switched to masquerading by hand is switched back with -e.
ip netns exec lb1 ipvsadm -e -t $VIP:443 -r 198.51.100.11:443 -m -w 1
traced "$B"
echo "ipvsadm calls: $(tr '\n' ';' <"$WORK/ipvsadm-calls")"
[ "$(cat "$WORK/ipvsadm-calls")" = "-Sn
-R
-e -t $VIP:443 -r 198.51.100.11:443 -g -w 1
-Sn" ] || fail "the forwarding method was not put back with one -e in one -R"
ip netns exec lb1 ipvsadm -Sn >"$SCRATCH/saved"
echo "ipvsadm -Sn after the last apply of B:"
cat "$SCRATCH/saved"
traced "$B"
[ "$(cat "$WORK/ipvsadm-calls")" = "-Sn" ] || fail "an apply after the fix ran more than -Sn"

# The negative control: the old reload, a flush and a load, under the same
# loop. New connections that arrive between the two find no service, and the
# director's own stack refuses them.
churn flush 2 "ipvsadm-restore < /etc/ipvsadm.rules"
grep -q "flush attempts [0-9]* failures [1-9]" "$SCRATCH/churn" || fail "the flush refused no connection: this scenario cannot see a refusal"
ip netns exec lb1 ipvsadm -Ln -t 198.51.100.190:7 >/dev/null 2>&1 && fail "the flush left the hand-made service (expected gone)"
echo "after the flush, the hand-made service is gone"
echo PASS
