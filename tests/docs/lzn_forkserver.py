"""A fork server for ``lzn``: the Markdown tests' shell blocks call ``lzn`` a dozen times, and each new
Python process spends ~6 s importing torch and Lightning before it does anything. This process imports them
once and forks a child per call; the child takes the caller's working folder, environment, standard streams
(passed over the socket) and arguments, runs ``lzn_shim`` exactly as a fresh process would, and reports the
exit status.

Run: ``python lzn_forkserver.py SOCKET``; clients are ``lzn_client.py`` (the ``lzn`` on the tests' PATH).
Each call is a fork of the freshly imported process, so no state passes from one call to the next. Nothing in
the parent runs a parallel torch op before forking (which would leave the children's OpenMP pool broken).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import lzn_shim  # noqa: E402  (imports torch, Lightning and the lzn CLI once, for every child)

import lzn_lightning.inference_cli  # noqa: E402  (lzn sample|classify|embed)
import lzn_lightning.recipes  # noqa: E402,F401  (LightningCLI and the recipes' classes: lzn fit|validate|test)


def _serve_one(conn: socket.socket) -> None:
    """In the forked child: become the client's ``lzn`` process, run it, send back the exit status."""
    msg, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
    request = json.loads(msg.decode())
    for fd, target in zip(fds, (0, 1, 2), strict=True):
        os.dup2(fd, target)
        os.close(fd)
    sys.stdin, sys.stdout, sys.stderr = (
        open(i, mode, closefd=False) for i, mode in ((0, "r"), (1, "w"), (2, "w"))
    )
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    code = 0
    try:
        lzn_shim.run(request["args"])
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:  # a traceback, as a process would print it
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    conn.sendall(str(code).encode())
    os._exit(code)


def main(path: str) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(8)
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        if os.fork() == 0:
            server.close()
            _serve_one(conn)
        conn.close()


if __name__ == "__main__":
    main(sys.argv[1])
