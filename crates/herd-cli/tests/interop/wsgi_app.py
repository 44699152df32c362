"""A WSGI app for gunicorn under herd: answers with the pid of the process that served; on
`/hang`, never."""
import os
import time


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/hang":
        time.sleep(3600)
    body = f"gunicorn pid {os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
