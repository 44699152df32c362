"""An ASGI app for uvicorn under herd: answers with the pid of the process that served."""
import os


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = f"uvicorn pid {os.getpid()}\n".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
