#!/bin/sh
# Run one scenario of tests/uml/scenarios in a user-mode Linux kernel
# (TESTING.md, "Real IPVS, dummy devices and VRRP"), and exit 0 only if it
# printed its verdict and the verdict is a pass.
#
#   tests/uml/run.sh SCENARIO SCRATCH [SECONDS]
#
# SCRATCH is an existing folder: the only host folder the guest can write.
# The scenario finds there what the test put for it (the trees dsrgen built),
# and leaves `verdict` (its exit code). Its output, with the kernel's
# messages, goes to SCRATCH/console and is printed here at the end. The guest
# is killed after SECONDS (default 60) of wall-clock time. DSRGEN_UML_SLOW=1
# passes on to the scenario (health.sh: wait for keepalived's default check
# interval).
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
SCENARIO=$1
SCRATCH=$(cd "$2" && pwd)
LIMIT=${3:-60}
[ -f "$HERE/scenarios/$SCENARIO.sh" ] || {
	echo "no such scenario: $HERE/scenarios/$SCENARIO.sh" >&2
	exit 2
}
case $SCRATCH in
*[!A-Za-z0-9/._-]*)
	# It travels on the kernel's command line, split at blanks.
	echo "scratch folder with an unusual character: $SCRATCH" >&2
	exit 2
	;;
esac
VERSION=$(ls /usr/lib/uml/modules)
[ -d "/usr/lib/uml/modules/$VERSION" ] || {
	echo "not one kernel version in /usr/lib/uml/modules: $VERSION" >&2
	exit 2
}

# See xstate.c: without it, UML 6.1 cannot run a process on a CPU with
# AVX-512 or AMX.
cc -shared -fPIC -O2 -o "$SCRATCH/xstate.so" "$HERE/xstate.c" -ldl
# UML keeps its pid file and control socket here (by default in ~/.uml).
mkdir -p "$SCRATCH/uml"
# The guest mounts tmpfs over /tmp, /run and /var/tmp, which would hide a
# checkout below them: the scripts it runs travel in the scratch folder, the
# one host folder it sees wherever it is.
rm -rf "$SCRATCH/harness"
mkdir -p "$SCRATCH/harness"
cp -R "$HERE/init.sh" "$HERE/lib.sh" "$HERE/hold.py" "$HERE/churn.py" "$HERE/scenarios" "$SCRATCH/harness/"
rm -f "$SCRATCH/verdict"

# Nothing may outlive the run. unshare dies with whoever started this script
# (setpriv --pdeathsig), and takes its child with it (--kill-child). That
# child, `timeout`, is the first process of a PID namespace of its own: when
# it ends, by the LIMIT or by a kill, the kernel kills every process of the
# namespace, linux.uml and all the helper processes of the guest, and reaps
# them before unshare sees it end. The root file system is the host's,
# read-only (`ro`); init.sh checks it.
started=$(date +%s.%N)
rc=0
setpriv --pdeathsig KILL -- unshare --pid --fork --kill-child=KILL \
	timeout -s KILL "$LIMIT" env LD_PRELOAD="$SCRATCH/xstate.so" linux.uml mem=512M quiet \
	rootfstype=hostfs rootflags=/ ro init="$SCRATCH/harness/init.sh" \
	uml_dir="$SCRATCH/uml" con=null con0=null,fd:1 \
	DSRGEN_UML_SCRATCH="$SCRATCH" DSRGEN_UML_SCENARIO="$SCRATCH/harness/scenarios/$SCENARIO.sh" \
	DSRGEN_UML_VERSION="$VERSION" DSRGEN_UML_SLOW="${DSRGEN_UML_SLOW:-0}" \
	</dev/null >"$SCRATCH/console" 2>&1 || rc=$?
took=$(echo "$(date +%s.%N) $started" | awk '{printf "%.1f", $1 - $2}')

# After a kill, the kernel tears the PID namespace down on its own time: wait
# for the last of the guest's processes, whose command line names this run's
# scratch folder, to be gone.
deadline=$(($(date +%s) + 10))
while pgrep -f "uml_dir=$SCRATCH/uml" >/dev/null; do
	if [ "$(date +%s)" -ge "$deadline" ]; then
		echo "FAIL: guest processes outlived the run: $(pgrep -f "uml_dir=$SCRATCH/uml" | tr '\n' ' ')"
		exit 1
	fi
	sleep 0.05
done

# The console ends its lines with CR LF.
tr -d "\r" <"$SCRATCH/console"
# A guest killed at the limit may still have written a verdict on its way
# down: only a guest that halted counts.
if [ "$rc" != 0 ]; then
	echo "FAIL: scenario $SCENARIO: linux.uml ended with exit code $rc after ${took} s (137: killed at the ${LIMIT} s limit)"
	exit 1
fi
if [ ! -f "$SCRATCH/verdict" ]; then
	echo "FAIL: scenario $SCENARIO left no verdict after ${took} s"
	exit 1
fi
verdict=$(cat "$SCRATCH/verdict")
echo "scenario $SCENARIO: exit code $verdict, ${took} s in user-mode Linux"
[ "$verdict" = 0 ]
