# frozen_string_literal: true

# Every folder that must exist below `root` for these relative paths, parents
# first, each once.
Puppet::Functions.create_function(:'dsrgen::folders') do
  dispatch :folders do
    param 'String', :root
    param 'Array[String]', :paths
    return_type 'Array[String]'
  end

  def folders(root, paths)
    dirs = paths.flat_map do |path|
      parts = File.dirname(path).split('/').reject { |p| p.empty? || p == '.' }
      (1..parts.length).map { |n| File.join(root, *parts.first(n)) }
    end
    dirs.uniq.sort_by { |d| [d.count('/'), d] }
  end
end
