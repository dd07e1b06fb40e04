# frozen_string_literal: true

require 'digest'

# The steps of a rollout a host owes after this run puts its files in place:
# those it owed already, the manifest's steps that name a file whose content or
# mode differs on the host (or that went away), the reloads of files that went
# away in the host's phase, in `order`, and for a script that went away its
# `down` where its `prune` would have run. Read where the catalog is compiled:
# with `puppet apply`, on the host itself.
Puppet::Functions.create_function(:'dsrgen::owed') do
  dispatch :owed do
    param 'String', :base
    param 'Array[Hash]', :entries
    param 'Array[Hash]', :steps
    param 'Array[Hash]', :previous
    param 'Array[Hash]', :owed
    param 'Array[String]', :order
    return_type 'Array[Hash]'
  end

  def owed(base, entries, steps, previous, owed, order)
    paths = entries.map { |e| e['path'] }
    gone = previous.reject { |e| paths.include?(e['path']) }
    changed = entries.reject { |e| same?(File.join(base, e['path']), e) }.map { |e| e['path'] }
    changed += gone.map { |e| e['path'] }
    steps.each do |s|
      owed << { 'phase' => s['phase'], 'run' => s['run'] } unless (s['when'] & changed).empty?
    end
    role_phase = { 'backend' => 'up', 'balancer' => 'reload' }
    order.each do |reload|
      gone.each do |e|
        next unless e['reload'] == reload && e['path'] != 'usr/local/sbin/dsrgen-vips'

        owed << { 'phase' => role_phase[e['role']], 'run' => reload }
      end
    end
    gone.select { |e| e['path'] == 'usr/local/sbin/dsrgen-vips' }.each do |e|
      owed << { 'phase' => e['role'] == 'backend' ? 'prune' : 'reload', 'run' => '/usr/local/sbin/dsrgen-vips down' }
    end
    owed.uniq
  end

  def same?(file, entry)
    File.file?(file) && !File.symlink?(file) &&
      format('%04o', File.stat(file).mode & 0o7777) == entry['mode'] &&
      Digest::SHA256.file(file).hexdigest == entry['sha256']
  end
end
