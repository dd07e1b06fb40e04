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
rm -f "$SCRATCH/verdict"

# Nothing may outlive the run. Each link of the chain dies with its parent
# (setpriv --pdeathsig: the parent of the first one is whoever started this
# script), `timeout` kills the kernel after LIMIT seconds, and the kernel's
# helper processes live in a PID namespace of their own, all killed when its
# first process, linux.uml itself, dies (--kill-child: when unshare dies).
# The root file system is the host's, read-only (`ro`); init.sh checks it.
started=$(date +%s.%N)
rc=0
setpriv --pdeathsig KILL -- timeout -s KILL "$LIMIT" \
	setpriv --pdeathsig KILL -- unshare --pid --fork --kill-child=KILL \
	env LD_PRELOAD="$SCRATCH/xstate.so" linux.uml mem=512M quiet \
	rootfstype=hostfs rootflags=/ ro init="$HERE/init.sh" \
	uml_dir="$SCRATCH/uml" con=null con0=null,fd:1 \
	DSRGEN_UML_SCRATCH="$SCRATCH" DSRGEN_UML_SCENARIO="$HERE/scenarios/$SCENARIO.sh" \
	DSRGEN_UML_VERSION="$VERSION" DSRGEN_UML_SLOW="${DSRGEN_UML_SLOW:-0}" \
	</dev/null >"$SCRATCH/console" 2>&1 || rc=$?
took=$(echo "$(date +%s.%N) $started" | awk '{printf "%.1f", $1 - $2}')

# The console ends its lines with CR LF.
tr -d "\r" <"$SCRATCH/console"
if [ ! -f "$SCRATCH/verdict" ]; then
	echo "FAIL: scenario $SCENARIO left no verdict after ${took} s (linux.uml exit code $rc; 137 is the ${LIMIT} s limit)"
	exit 1
fi
verdict=$(cat "$SCRATCH/verdict")
echo "scenario $SCENARIO: exit code $verdict, ${took} s in user-mode Linux"
[ "$verdict" = 0 ]
