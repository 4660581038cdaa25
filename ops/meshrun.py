"""What ops/soak and ops/profile share: the load-test limits a mesh runs with, durations
given as text, and calling ops/mesh on a scratch data dir (python3 stdlib only)."""

import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MESH = os.path.join(ROOT, "ops/mesh")
# Load-test limits: one generator address signs up and connects every member.
LIMITS = {
    "CHATMESH__GATEWAY__LIMITS__SENDS_PER_SECOND": "100000",
    "CHATMESH__GATEWAY__LIMITS__SEND_BURST": "100000",
    "CHATMESH__GATEWAY__FRAMES_PER_SECOND": "100000",
    "CHATMESH__GATEWAY__MAX_CONNECTIONS_PER_IP": "19800",
    "CHATMESH__GATEWAY__REGISTER_IP_BURST": "100000",
    "CHATMESH__GATEWAY__LOGIN_IP_BURST": "100000",
    "CHATMESH__GATEWAY__ROOMS_BURST": "100000",
    "CHATMESH__GATEWAY__API_USER_BURST": "1000000",
    "CHATMESH__GATEWAY__API_PER_USER_PER_MINUTE": "10000000",
    "CHATMESH__FILES__UPLOADS_PER_ADDRESS": "100000",
    "CHATMESH__WORKER__MAX_ROOMS_PER_USER": "1000000",
    "CHATMESH__WORKER__ARGON2_MEMORY_KIB": "1024",
    "CHATMESH__WORKER__ARGON2_ITERATIONS": "1",
}


def seconds(text):
    """'90s', '5m', '1h' or a number of seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    text = text.strip()
    if text and text[-1] in units:
        return float(text[:-1]) * units[text[-1]]
    return float(text)


def mesh(data, *words, check=True, env=None):
    """`ops/mesh WORDS --data DATA`: its output; raises when it fails (unless check=False)."""
    out = subprocess.run([MESH, *words, "--data", data], capture_output=True, text=True,
                         env=env)
    if check and out.returncode != 0:
        raise RuntimeError(f"ops/mesh {' '.join(words)}: {out.stderr.strip()}")
    return out.stdout
