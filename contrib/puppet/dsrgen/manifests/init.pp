# @summary Deploy a host's files from a dsrgen output folder.
#
# Puts every file that the output folder's manifest.json lists for this host
# under `root`, with its mode, removes the files an earlier run of this class
# put there and the manifest no longer lists, and runs each reload command of
# the manifest once when one of its files changed.
#
# @param output
#   The folder `dsrgen build` wrote, where the catalog is compiled.
# @param host
#   The host's name in the inventory.
# @param root
#   Where the host's tree lands: / on a live host, a folder for an image build.
# @param command_prefix
#   Put in front of every reload command, e.g. `ip netns exec lab`.
# @param state_file
#   What this class deployed last time, relative to `root`.
class dsrgen (
  String $output,
  String $host = $facts['networking']['hostname'],
  String $root = '/',
  String $command_prefix = '',
  String $state_file = 'var/lib/dsrgen/deployed.json',
) {
  $base = $root ? { '/' => '', default => regsubst($root, '/+$', '') }
  $entries = dsrgen::files($output, $host)
  $paths = $entries.map |$e| { $e['path'] }
  $previous = dsrgen::previous("${base}/${state_file}")

  # Reload commands, in the order they must run: ARP settings before
  # addresses, units before services.
  $order = [
    'sysctl --system',
    'systemctl daemon-reload',
    '/usr/local/sbin/dsrgen-vips up',
    'networkctl reload',
    'nft -f /etc/nftables.d/dsrgen-marks.nft',
    'systemctl reload keepalived',
    'ipvsadm-restore < /etc/ipvsadm.rules',
    'nft -f /etc/nftables.d/dsrgen.nft',
    'dscontrol file newload dsrgen.cfg',
  ]
  $reloads = ($entries + $previous).map |$e| { $e['reload'] }.unique
  $ordered = $order.filter |$r| { $r in $reloads }
  $ordered.each |$r| {
    exec { "dsrgen reload ${r}":
      command     => "${command_prefix} ${r}",
      provider    => shell,
      refreshonly => true,
      path        => ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'],
    }
  }
  $ordered.each |$i, $r| {
    if $i > 0 {
      Exec["dsrgen reload ${ordered[$i - 1]}"] -> Exec["dsrgen reload ${r}"]
    }
  }

  $folders = dsrgen::folders($base, $paths + [$state_file])
  file { $folders:
    ensure => directory,
  }

  $entries.each |$e| {
    file { "${base}/${e['path']}":
      ensure  => file,
      content => file("${output}/hosts/${host}/${e['path']}"),
      mode    => $e['mode'],
      notify  => Exec["dsrgen reload ${e['reload']}"],
    }
  }

  # Files that went away. The loopback script takes its addresses down before
  # it goes; its own reload (`up`) would make no sense then.
  $script = 'usr/local/sbin/dsrgen-vips'
  $gone = $previous.filter |$e| { !($e['path'] in $paths) }
  if $script in $gone.map |$e| { $e['path'] } {
    exec { 'dsrgen-vips down':
      command  => "${command_prefix} /usr/local/sbin/dsrgen-vips down",
      provider => shell,
      path     => ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'],
      before   => File["${base}/${script}"],
    }
  }
  $gone.each |$e| {
    file { "${base}/${e['path']}":
      ensure => absent,
      notify => $e['path'] ? {
        $script => [],
        default => Exec["dsrgen reload ${e['reload']}"],
      },
    }
  }

  file { "${base}/${state_file}":
    ensure  => file,
    content => dsrgen::to_state($entries),
    mode    => '0644',
  }
}
