"""Hold HTTP/1.1 connections open across a change on the director.

usage: hold.py ADDRESS FIRST_PORT COUNT GO_FILE

Opens COUNT connections to ADDRESS:80 from local ports FIRST_PORT onwards,
sends one request on each and prints "PORT first BODY"; once GO_FILE exists,
sends a second request on each connection, the same one, and prints
"PORT second BODY" or "PORT second failed: ERROR".
"""

import os
import re
import socket
import sys
import time


def request(sock):
    sock.sendall(b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed by the server")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed by the server")
        body += chunk
    return body.decode().strip()


def main():
    address, first, count, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    held = []
    for port in range(first, first + count):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.settimeout(5)
        sock.bind(("0.0.0.0", port))
        sock.connect((address, 80))
        print(port, "first", request(sock), flush=True)
        held.append((port, sock))
    while not os.path.exists(go):
        time.sleep(0.05)
    for port, sock in held:
        try:
            print(port, "second", request(sock), flush=True)
        except OSError as error:
            print(port, "second failed:", error, flush=True)


main()
