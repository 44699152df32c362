"""A Twisted resource for the interop tests (`twist web --class twisted_app.PidResource`):
answers with the pid of the process that served, from the reactor's thread."""
import os

from twisted.web.resource import Resource


class PidResource(Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain")
        return f"twisted pid {os.getpid()}\n".encode()
