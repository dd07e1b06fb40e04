# frozen_string_literal: true

require 'json'

# The state file's content: the entries deployed, as JSON.
Puppet::Functions.create_function(:'dsrgen::to_state') do
  dispatch :to_state do
    param 'Array[Hash]', :entries
    return_type 'String'
  end

  def to_state(entries)
    "#{JSON.pretty_generate(entries)}\n"
  end
end
