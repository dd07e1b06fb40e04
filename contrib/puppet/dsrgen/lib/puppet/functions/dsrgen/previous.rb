# frozen_string_literal: true

require 'json'

# What the last run deployed, as recorded in the state file; empty when there
# is none or it cannot be read.
Puppet::Functions.create_function(:'dsrgen::previous') do
  dispatch :previous do
    param 'String', :state_file
    return_type 'Array[Hash]'
  end

  def previous(state_file)
    return [] unless File.file?(state_file)

    JSON.parse(File.read(state_file))
  rescue JSON::ParserError
    []
  end
end
