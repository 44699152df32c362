import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.Channel;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;

/** An HTTP server on the socket inherited as standard input (inetd's convention). */
public class InheritedServer {
    public static void main(String[] args) throws IOException {
        Channel inherited = System.inheritedChannel();
        if (!(inherited instanceof ServerSocketChannel)) {
            System.err.println("no listening socket on stdin: " + inherited);
            System.exit(2);
        }
        ServerSocketChannel server = (ServerSocketChannel) inherited;
        server.configureBlocking(true);
        long pid = ProcessHandle.current().pid();
        while (true) {
            try (SocketChannel client = server.accept()) {
                ByteBuffer request = ByteBuffer.allocate(4096);
                client.read(request);
                String body = "java pid " + pid + "\n";
                String reply = "HTTP/1.1 200 OK\r\nContent-Length: " + body.length()
                        + "\r\nConnection: close\r\n\r\n" + body;
                client.write(ByteBuffer.wrap(reply.getBytes(StandardCharsets.US_ASCII)));
            }
        }
    }
}
