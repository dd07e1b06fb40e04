class { 'dsrgen': output => '/srv/dsrgen/out' }
