"""Helpers of tests/e2e/maglev.sh, run inside its network namespaces.

    udp.py serve NAME ADDRESS PORT      answer every datagram with NAME
    udp.py ask VIP PORT FIRST COUNT     one datagram from each client port
                                        FIRST.., print "port backend" lines
    udp.py frag-needed VIP CLIENT SPORT DPORT MTU
                                        send the ICMP "fragmentation needed"
                                        a router would send about the reply
                                        VIP:SPORT -> CLIENT:DPORT
"""
import select
import socket
import struct
import sys


def serve(name, address, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((address, int(port)))
    while True:
        _, peer = s.recvfrom(64)
        s.sendto(name.encode(), peer)


def ask(vip, port, first, count):
    first, count, answers = int(first), int(count), {}
    pending = list(range(first, first + count))
    for _ in range(5):  # a datagram may be lost while neighbours resolve
        for start in range(0, len(pending), 500):
            batch = {}
            for p in pending[start:start + 500]:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind(("", p))
                s.sendto(b"?", (vip, int(port)))
                batch[s] = p
            open_ = set(batch)
            while open_:
                ready, _, _ = select.select(list(open_), [], [], 1.0)
                if not ready:
                    break
                for s in ready:
                    answers[batch[s]] = s.recv(64).decode()
                    open_.discard(s)
            for s in batch:
                s.close()
        pending = [p for p in pending if p not in answers]
        if not pending:
            break
    for p in sorted(answers):
        print(p, answers[p])
    print("unanswered", len(pending), file=sys.stderr)


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def frag_needed(vip, client, sport, dport, mtu):
    quoted_ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 1400, 0, 0x4000, 64, 17, 0,
                            socket.inet_aton(vip), socket.inet_aton(client))
    quoted_udp = struct.pack("!HHHH", int(sport), int(dport), 1380, 0)
    body = struct.pack("!HH", 0, int(mtu)) + quoted_ip + quoted_udp
    icmp = struct.pack("!BBH", 3, 4, 0) + body
    icmp = struct.pack("!BBH", 3, 4, checksum(icmp)) + body
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.sendto(icmp, (vip, 0))


if __name__ == "__main__":
    {"serve": serve, "ask": ask, "frag-needed": frag_needed}[sys.argv[1]](*sys.argv[2:])
