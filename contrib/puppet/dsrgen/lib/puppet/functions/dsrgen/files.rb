# frozen_string_literal: true

require 'json'

# The entries of a dsrgen output folder's manifest.json for one host: hashes
# with `path`, `mode`, `sha256`, `reload` (and `host`, `role`). Read where the
# catalog is compiled: with `puppet apply`, on the host itself.
Puppet::Functions.create_function(:'dsrgen::files') do
  dispatch :files do
    param 'String', :output
    param 'String', :host
    return_type 'Array[Hash]'
  end

  def files(output, host)
    manifest = JSON.parse(File.read(File.join(output, 'manifest.json')))
    unless manifest['format'] == 2
      raise Puppet::ParseError, "dsrgen: #{output}/manifest.json has format #{manifest['format']}, this module reads format 2"
    end
    manifest['files'].select { |f| f['host'] == host }
  end
end
