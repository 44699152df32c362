# A worker written the einhorn way: its socket from EINHORN_FD_0, its master checked as
# einhorn's Einhorn::Worker.ensure_worker! does, and its readiness acknowledged with
# `worker:ack` on EINHORN_SOCK_PATH, framed as einhorn's Einhorn::Client::Transport frames it
# (YAML, '%' and newlines escaped, one line). Answers every HTTP request with its pid.
require 'socket'
require 'yaml'

# einhorn's lib/einhorn/client.rb, Transport.serialize_message.
def serialize_message(message)
  serialized = YAML.dump(message)
  escaped = serialized.gsub(/%|\n/, '%' => '%25', "\n" => '%0A')
  escaped + "\n"
end

master = ENV.fetch('EINHORN_MASTER_PID')
abort "EINHORN_MASTER_PID is #{master}, but my parent is #{Process.ppid}" unless Integer(master) == Process.ppid
count = Integer(ENV.fetch('EINHORN_FD_COUNT'))
abort "EINHORN_FD_COUNT is #{count}" unless count >= 1
server = Socket.for_fd(Integer(ENV.fetch('EINHORN_FD_0')))

if (path = ENV['EINHORN_SOCK_PATH'])
  client = UNIXSocket.open(path)
  client.write(serialize_message('command' => 'worker:ack', 'pid' => $$))
  client.close
end

loop do
  conn, = server.accept
  conn.readpartial(4096)
  body = "einhorn pid #{$$}\n"
  conn.write("HTTP/1.1 200 OK\r\nContent-Length: #{body.bytesize}\r\nConnection: close\r\n\r\n#{body}")
  conn.close
end
