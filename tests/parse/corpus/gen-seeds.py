#!/usr/bin/env python3
# Writes the seed corpora of the fuzz targets from the hellos in hello/
# and a few hand-made inputs.  Run from this directory.
#   fuzz_tls/:    first byte: bit 0 set for the client's direction, the
#                 other bits the largest piece fed at a time (0: whole)
#   fuzz_detect/: the first bytes of a direction
import glob
import os

def write(d, name, data):
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, name), "wb").write(data)

def main():
    for path in sorted(glob.glob("hello/*.bin")):
        base = os.path.basename(path)[:-4]
        data = open(path, "rb").read()
        client = 1 if base.startswith("ch-") else 0
        write("fuzz_tls", base + "-whole", bytes([client]) + data)
        write("fuzz_tls", base + "-bytes", bytes([2 | client]) + data)
        write("fuzz_tls", base + "-pieces", bytes([(13 << 1) | client]) + data)
        write("fuzz_tls", base + "-half", bytes([client]) + data[:len(data) // 2])
        # a length inside the hello off by one
        m = bytearray(data)
        m[5 + 4 + 2 + 32] ^= 1
        write("fuzz_tls", base + "-sid", bytes([client]) + bytes(m))
        write("fuzz_detect", base, data[:64])
    write("fuzz_tls", "not-tls", b"\x01GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    write("fuzz_tls", "alert", b"\x00\x15\x03\x03\x00\x02\x02\x28")
    write("fuzz_detect", "get", b"GET /index.html HTTP/1.1\r\nHost: a\r\n\r\n")
    write("fuzz_detect", "propfind", b"PROPFIND /dav/ HTTP/1.1\r\n")
    write("fuzz_detect", "status", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    write("fuzz_detect", "h2-preface",
          b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
    write("fuzz_detect", "h2-settings",
          b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64")
    write("fuzz_detect", "ssh", b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
    write("fuzz_detect", "junk", bytes(range(0, 256, 7)))

main()
