"""A WSGI app for gunicorn under herd: answers with the pid of the process that served."""
import os


def app(environ, start_response):
    body = f"gunicorn pid {os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
