#!/usr/bin/env python3
# Writes the TLS handshake bytes that tests/parse/check_tls.c reads, from
# real handshakes between Python's ssl module (OpenSSL) endpoints over
# memory BIOs.  Run from this directory; the outputs are checked in, so the
# tests do not depend on the OpenSSL version of the machine that runs them.
#
#   hello/ch-*.bin: what the client sent first (its ClientHello record)
#   hello/sh-*.bin: what the server answered (ServerHello record and, for
#                   TLS 1.2, the rest of its first flight; for TLS 1.3 the
#                   ChangeCipherSpec and encrypted records after it)
#   hello/sh-hrr.bin: HelloRetryRequest, then the real ServerHello flight
import os
import ssl
import subprocess
import tempfile

def make_cert(d):
    key = os.path.join(d, "key.pem")
    crt = os.path.join(d, "crt.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                    "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", key, "-out", crt, "-subj", "/CN=example.com",
                    "-days", "1"], check=True, capture_output=True)
    return crt, key

def handshake(crt, key, version, sni, alpn, server_groups=None):
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(crt, key)
    sctx.minimum_version = version
    sctx.maximum_version = version
    if alpn:
        sctx.set_alpn_protocols([alpn])
    if server_groups:
        sctx.set_ecdh_curve(server_groups)
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.check_hostname = False
    cctx.verify_mode = ssl.CERT_NONE
    cctx.maximum_version = version
    if alpn:
        cctx.set_alpn_protocols(["h2", "http/1.1"])
    cin, cout, sin, sout = (ssl.MemoryBIO() for _ in range(4))
    c = cctx.wrap_bio(cin, cout, server_side=False, server_hostname=sni)
    s = sctx.wrap_bio(sin, sout, server_side=True)
    client_bytes = b""
    server_bytes = b""
    for _ in range(3):
        try:
            c.do_handshake()
        except ssl.SSLWantReadError:
            pass
        out = cout.read()
        client_bytes += out
        sin.write(out)
        try:
            s.do_handshake()
        except ssl.SSLWantReadError:
            pass
        out = sout.read()
        server_bytes += out
        cin.write(out)
    return client_bytes, server_bytes

def first_records(data, n):
    pos = 0
    for _ in range(n):
        pos += 5 + int.from_bytes(data[pos + 3:pos + 5], "big")
    return data[:pos]

def main():
    os.makedirs("hello", exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        crt, key = make_cert(d)
        cases = [
            ("tls13-sni-h2", ssl.TLSVersion.TLSv1_3, "Www.Example.COM", "h2"),
            ("tls13-nosni", ssl.TLSVersion.TLSv1_3, None, None),
            ("tls12-sni-http11", ssl.TLSVersion.TLSv1_2, "api.example.org", "http/1.1"),
            ("tls12-nosni", ssl.TLSVersion.TLSv1_2, None, None),
        ]
        for name, ver, sni, alpn in cases:
            cb, sb = handshake(crt, key, ver, sni, alpn)
            open("hello/ch-%s.bin" % name, "wb").write(first_records(cb, 1))
            # the server's first flight, cut to keep the files small
            open("hello/sh-%s.bin" % name, "wb").write(sb[:1200])
        # The client offers an X25519 key share, the server wants P-256.
        cb, sb = handshake(crt, key, ssl.TLSVersion.TLSv1_3, "retry.example.net",
                           "h2", server_groups="prime256v1")
        open("hello/sh-hrr.bin", "wb").write(sb[:1200])
        open("hello/ch-hrr.bin", "wb").write(cb)

main()
