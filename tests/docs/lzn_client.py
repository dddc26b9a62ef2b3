"""``lzn`` for the Markdown tests: hands its arguments, folder, environment and standard streams to the fork
server (lzn_forkserver.py, socket in $LZN_FORKSERVER) and exits with the status the call ended with."""

import json
import os
import socket
import sys

conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
conn.connect(os.environ["LZN_FORKSERVER"])
request = {"args": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}
socket.send_fds(conn, [json.dumps(request).encode()], [0, 1, 2])
reply = b""
while chunk := conn.recv(64):
    reply += chunk
sys.exit(int(reply or b"1"))  # no reply: the call died without reporting (e.g. killed)
