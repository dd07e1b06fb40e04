"""Open new connections in a loop while the director changes.

usage: churn.py ADDRESS PORT STOP_FILE STARTED_FILE

Creates STARTED_FILE after its first answered connection; until STOP_FILE
exists, opens one TCP connection after the other to
ADDRESS:PORT (the kernel picks a new local port each time), sends an HTTP
request and reads the start of the answer. Prints one line at the end:
"attempts N failures M" and then each kind of failure with its count
(a refused connection is the director answering for a VIP it has no
service for).
"""

import os
import socket
import sys


def attempt(address, port):
    with socket.create_connection((address, port), timeout=2) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        head = sock.recv(16)
        if not head.startswith(b"HTTP/"):
            raise OSError("no HTTP answer: %r" % head)


def main():
    address, port, stop, started = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    attempts = failures = 0
    kinds = {}
    while not os.path.exists(stop):
        attempts += 1
        try:
            attempt(address, port)
            if not os.path.exists(started):
                open(started, "w").close()
        except OSError as error:
            failures += 1
            kind = type(error).__name__ + ": " + str(error)
            kinds[kind] = kinds.get(kind, 0) + 1
    print("attempts", attempts, "failures", failures)
    for kind, count in sorted(kinds.items()):
        print("  ", count, kind)


main()
