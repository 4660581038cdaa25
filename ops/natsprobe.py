"""A tiny NATS client for ops scripts (python3 stdlib only): connects with an nkey seed of
the closed bus (`chatmesh nats-auth` writes them), publishes, subscribes and makes requests
over one blocking socket. ops/mesh uses it to measure round trips between regions.

Ed25519 (RFC 8032) is written out here because the stdlib has none; it only signs the
server's nonce once per connection (a few ms)."""

import base64
import hashlib
import itertools
import json
import os
import socket
import time

# ---------------------------------------------------------------- Ed25519 signing (RFC 8032)

_P = 2 ** 255 - 19
_Q = 2 ** 252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _recover_x(y, sign):
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if x & 1 != sign:
        x = _P - x
    return x


_GY = 4 * pow(5, _P - 2, _P) % _P
_GX = _recover_x(_GY, 0)
_G = (_GX, _GY, 1, _GX * _GY % _P)


def _add(p, q):
    a = (p[1] - p[0]) * (q[1] - q[0]) % _P
    b = (p[1] + p[0]) * (q[1] + q[0]) % _P
    c = 2 * p[3] * q[3] * _D % _P
    d = 2 * p[2] * q[2] % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _mul(s, p):
    q = (0, 1, 1, 0)
    while s:
        if s & 1:
            q = _add(q, p)
        p = _add(p, p)
        s >>= 1
    return q


def _encode(p):
    zi = pow(p[2], _P - 2, _P)
    x, y = p[0] * zi % _P, p[1] * zi % _P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def _sha512_int(*parts):
    return int.from_bytes(hashlib.sha512(b"".join(parts)).digest(), "little")


def ed25519_public(seed):
    h = hashlib.sha512(seed).digest()
    a = int.from_bytes(h[:32], "little") & ((1 << 254) - 8) | (1 << 254)
    return _encode(_mul(a, _G))


def ed25519_sign(seed, msg):
    h = hashlib.sha512(seed).digest()
    a = int.from_bytes(h[:32], "little") & ((1 << 254) - 8) | (1 << 254)
    pub = _encode(_mul(a, _G))
    r = _sha512_int(h[32:], msg) % _Q
    big_r = _encode(_mul(r, _G))
    k = _sha512_int(big_r, pub, msg) % _Q
    return big_r + ((r + k * a) % _Q).to_bytes(32, "little")


# ---------------------------------------------------------------- nkeys

def _crc16(data):
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xFFFF
    return crc


def nkey_from_seed(text):
    """(public key string, raw 32-byte seed) of an nkey seed `S...`."""
    text = text.strip()
    raw = base64.b32decode(text + "=" * (-len(text) % 8))
    body, crc = raw[:-2], int.from_bytes(raw[-2:], "little")
    if _crc16(body) != crc or body[0] >> 3 != 18:
        raise ValueError("not an nkey seed")
    kind = ((body[0] & 7) << 5) | (body[1] >> 3)
    seed = body[2:34]
    pub = bytes([kind]) + ed25519_public(seed)
    pub += _crc16(pub).to_bytes(2, "little")
    return base64.b32encode(pub).decode().rstrip("="), seed


# ---------------------------------------------------------------- client

class Client:
    """Blocking NATS client: `request`, `pub`, `sub`, `wait`. Messages are (subject,
    headers, payload); a status-only reply (503 no responders) has headers and no payload."""

    def __init__(self, url, seed_file=None, inbox="_INBOX", timeout=5.0):
        host, port = url.split("://", 1)[-1].rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.msgs = []
        self.sids = itertools.count(1)
        self.inbox = f"{inbox}.probe{os.getpid()}x{id(self) % 100000}"
        info = self._line()
        if not info.startswith("INFO "):
            raise ConnectionError(f"unexpected greeting {info[:80]!r}")
        info = json.loads(info[5:])
        opts = {"verbose": False, "pedantic": False, "headers": True, "no_responders": True,
                "name": "ops-natsprobe", "lang": "python", "version": "0"}
        if seed_file:
            with open(seed_file) as f:
                pub, seed = nkey_from_seed(f.read())
            sig = ed25519_sign(seed, info.get("nonce", "").encode())
            opts["nkey"] = pub
            opts["sig"] = base64.urlsafe_b64encode(sig).decode().rstrip("=")
        self.sock.sendall(f"CONNECT {json.dumps(opts)}\r\nPING\r\n".encode())
        while True:
            line = self._line()
            if line.startswith("-ERR"):
                raise ConnectionError(line)
            if line == "PONG":
                break
        self.sub(self.inbox + ".*")

    def close(self):
        self.sock.close()

    def _fill(self, n):
        while len(self.buf) < n:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("connection closed")
            self.buf += data

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill(len(self.buf) + 1)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode()

    def _payload(self, n):
        self._fill(n + 2)
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _read_one(self):
        line = self._line()
        if line == "PONG":
            return line
        if line.startswith("PING"):
            self.sock.sendall(b"PONG\r\n")
        elif line.startswith("MSG "):
            parts = line.split()
            reply = parts[3] if len(parts) == 5 else None
            self.msgs.append((parts[1], "", self._payload(int(parts[-1])), reply))
        elif line.startswith("HMSG "):
            parts = line.split()
            raw = self._payload(int(parts[-1]))
            head = int(parts[-2])
            reply = parts[3] if len(parts) == 6 else None
            self.msgs.append((parts[1], raw[:head].decode(errors="replace"), raw[head:], reply))
        elif line.startswith("-ERR"):
            raise RuntimeError(line)

    def sub(self, subject):
        self.sock.sendall(f"SUB {subject} {next(self.sids)}\r\n".encode())

    def pub(self, subject, data=b"", reply=None):
        reply = f" {reply}" if reply else ""
        self.sock.sendall(f"PUB {subject}{reply} {len(data)}\r\n".encode() + data + b"\r\n")

    def flush(self, timeout=5.0):
        """A PING/PONG with the server: everything sent before (SUBs) is applied."""
        self.sock.sendall(b"PING\r\n")
        self.sock.settimeout(timeout)
        while self._read_one() != "PONG":
            pass

    def wait(self, match, timeout=5.0):
        """The first message `match` takes, or None after `timeout`."""
        end = time.monotonic() + timeout
        while True:
            for i, msg in enumerate(self.msgs):
                if match(msg):
                    return self.msgs.pop(i)
            left = end - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                self._read_one()
            except socket.timeout:
                return None

    def request(self, subject, data=b"", timeout=5.0):
        reply = f"{self.inbox}.{next(self.sids)}"
        self.pub(subject, data, reply)
        return self.wait(lambda m: m[0] == reply, timeout)

    def api(self, op, body=None, timeout=5.0):
        msg = self.request("$JS.API." + op, json.dumps(body or {}).encode(), timeout)
        return json.loads(msg[2]) if msg and msg[2] else {}

    def serve_one(self, timeout=5.0):
        """Answers one request on a subscribed subject with its own payload; True if done."""
        msg = self.wait(lambda m: m[3] is not None, timeout)
        if msg:
            self.pub(msg[3], msg[2])
        return msg is not None
