#!/bin/sh
# The first process of the user-mode Linux guest that tests/uml/run.sh boots.
# The kernel passes the DSRGEN_UML_* settings of its command line as
# environment. The root file system is the host's, through hostfs: every
# write outside the tmpfs mounts below would land on the host, so the root is
# mounted read-only and this script refuses to go on if it is not.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH

mount -t proc proc /proc
mount -t sysfs sysfs /sys
# Everything a scenario writes: /run (network namespaces, pid files), /tmp
# (its work folder), /var/tmp (some programs' temporary files).
for dir in /run /tmp /var/tmp; do
	mount -t tmpfs tmpfs "$dir"
done
# The scratch folder, writable, at the same path as on the host.
mkdir -p "$DSRGEN_UML_SCRATCH"
mount -t hostfs hostfs "$DSRGEN_UML_SCRATCH" -o "$DSRGEN_UML_SCRATCH"

finish() {
	echo "$1" >"$DSRGEN_UML_SCRATCH/verdict"
	# hostfs writes go through the guest's page cache: flush them.
	umount "$DSRGEN_UML_SCRATCH"
	halt -f
}

if touch /.dsrgen-uml-probe 2>/dev/null; then
	rm -f /.dsrgen-uml-probe
	echo "FAIL: the root file system (the host's) is writable in the guest"
	finish 99
fi

# modprobe -d takes a root below which lib/modules/<version> is found.
mkdir -p /tmp/modules/lib/modules
ln -s "/usr/lib/uml/modules/$DSRGEN_UML_VERSION" "/tmp/modules/lib/modules/$DSRGEN_UML_VERSION"
# Modules the kernel asks for itself (nftables expressions, IPVS schedulers)
# come from the same folder.
printf '#!/bin/sh\nexec modprobe -d /tmp/modules "$@"\n' >/tmp/modules/modprobe
chmod +x /tmp/modules/modprobe
echo /tmp/modules/modprobe >/proc/sys/kernel/modprobe
for module in veth bridge dummy ip_vs ip_vs_rr ip_vs_wlc ip_vs_sh ip_vs_mh overlay; do
	modprobe -d /tmp/modules "$module" || {
		echo "FAIL: modprobe $module"
		finish 98
	}
done

echo "=== $DSRGEN_UML_SCENARIO"
cd /tmp || finish 97
sh "$DSRGEN_UML_SCENARIO" "$DSRGEN_UML_SCRATCH" 2>&1
finish $?
