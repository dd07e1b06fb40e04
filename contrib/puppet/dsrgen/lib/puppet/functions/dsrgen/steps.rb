# frozen_string_literal: true

require 'json'

# The steps of a dsrgen output folder's manifest.json (`rollout`) for one host:
# hashes with `phase`, `run` and `when`.
Puppet::Functions.create_function(:'dsrgen::steps') do
  dispatch :steps do
    param 'String', :output
    param 'String', :host
    return_type 'Array[Hash]'
  end

  def steps(output, host)
    manifest = JSON.parse(File.read(File.join(output, 'manifest.json')))
    manifest['rollout'].select { |s| s['host'] == host }
  end
end
