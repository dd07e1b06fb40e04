# @summary Deploy a host's files from a dsrgen output folder, phase by phase.
#
# A host picks a tree up in the three phases of the manifest's `rollout`:
# `up` (puts every file the manifest lists for this host under `root`, with
# its mode, removes the files an earlier run put there and the manifest no
# longer lists; backends add what is new), `reload` (balancers reload),
# `prune` (backends remove what went). A fleet runs each phase on every host
# before the next; `phase => 'all'` runs the three on this host at once. The
# steps a change makes the host owe are kept in `pending_file` until they ran,
# so that a run that stops half way finishes them the next time.
#
# @param output
#   The folder `dsrgen build` wrote, where the catalog is compiled.
# @param phase
#   `all`, `up`, `reload` or `prune`.
# @param host
#   The host's name in the inventory.
# @param root
#   Where the host's tree lands: / on a live host, a folder for an image build.
# @param command_prefix
#   Put in front of every command, e.g. `ip netns exec lab`.
# @param state_file
#   What this class deployed last time, relative to `root`.
# @param pending_file
#   The steps the host still owes, relative to `root`.
class dsrgen (
  String $output,
  Enum['all', 'up', 'reload', 'prune'] $phase = 'all',
  String $host = $facts['networking']['hostname'],
  String $root = '/',
  String $command_prefix = '',
  String $state_file = 'var/lib/dsrgen/deployed.json',
  String $pending_file = 'var/lib/dsrgen/pending.json',
) {
  $base = $root ? { '/' => '', default => regsubst($root, '/+$', '') }
  $path = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']
  $script = 'usr/local/sbin/dsrgen-vips'

  # Reload commands, in the order a host runs them: ARP settings before
  # addresses, units before services. The reloads of files that went away
  # run in this order.
  $order = [
    'sysctl --system',
    'systemctl daemon-reload',
    '/usr/local/sbin/dsrgen-vips up',
    'networkctl reload',
    'nft -f /etc/nftables.d/dsrgen-marks.nft',
    'systemctl reload keepalived',
    '/usr/local/sbin/dsrgen-ipvsadm apply',
    'nft -f /etc/nftables.d/dsrgen.nft',
    'dscontrol file newload dsrgen.cfg',
  ]
  $before = dsrgen::previous("${base}/${pending_file}")

  if $phase in ['all', 'up'] {
    $entries = dsrgen::files($output, $host)
    $paths = $entries.map |$e| { $e['path'] }
    $previous = dsrgen::previous("${base}/${state_file}")
    $owed = dsrgen::owed($base, $entries, dsrgen::steps($output, $host), $previous, $before, $order)

    $folders = dsrgen::folders($base, $paths + [$state_file, $pending_file])
    file { $folders:
      ensure => directory,
    }
    $entries.each |$e| {
      file { "${base}/${e['path']}":
        ensure  => file,
        content => file("${output}/hosts/${host}/${e['path']}"),
        mode    => $e['mode'],
        before  => File["${base}/${pending_file}"],
      }
    }
    # Files that went away; the script once its `down` ran (below).
    $previous.filter |$e| { !($e['path'] in $paths) and $e['path'] != $script }.each |$e| {
      file { "${base}/${e['path']}":
        ensure => absent,
        before => File["${base}/${pending_file}"],
      }
    }
    file { "${base}/${state_file}":
      ensure  => file,
      content => dsrgen::to_state($entries),
      mode    => '0644',
    }
    file { "${base}/${pending_file}":
      ensure  => file,
      content => dsrgen::to_state($owed),
      mode    => '0644',
    }
    $after_deploy = [File["${base}/${pending_file}"]]
  } else {
    $owed = $before
    $after_deploy = []
  }

  $running = $phase ? { 'all' => ['up', 'reload', 'prune'], default => [$phase] }
  $steps = $running.map |$p| { $owed.filter |$s| { $s['phase'] == $p } }.flatten
  $steps.each |$i, $s| {
    exec { "dsrgen ${s['phase']} ${s['run']}":
      command  => "${command_prefix} ${s['run']}",
      provider => shell,
      path     => $path,
      require  => $i ? { 0 => $after_deploy, default => Exec["dsrgen ${steps[$i - 1]['phase']} ${steps[$i - 1]['run']}"] },
    }
    if $s['run'] == '/usr/local/sbin/dsrgen-vips down' {
      file { "${base}/${script}":
        ensure  => absent,
        require => Exec["dsrgen ${s['phase']} ${s['run']}"],
      }
    }
  }
  unless $steps.empty {
    # Once every step of the phase ran, the host owes only the others.
    $left = dsrgen::to_state($owed.filter |$s| { !($s['phase'] in $running) })
    exec { 'dsrgen forget the steps that ran':
      command  => "printf %s ${shellquote($left)} > ${shellquote("${base}/${pending_file}")}",
      provider => shell,
      path     => $path,
      require  => Exec["dsrgen ${steps[-1]['phase']} ${steps[-1]['run']}"],
    }
  }
}
