"""The reward process: ``python -I -S sandbox_child.py``, started by ``sandbox.py``.

It reads one JSON request on stdin, sets rlimits, imports the standard-library modules a
reward may use, compiles the reward source, and only then installs a seccomp filter on
itself (``PR_SET_NO_NEW_PRIVS`` + ``SECCOMP_SET_MODE_FILTER``; no privileges or user
namespaces needed, so it works in a restricted pod under the RuntimeDefault profile). From
then on the kernel allows computation, memory, clocks and writes to stdout/stderr only:

- process creation (fork/vfork/clone/clone3), exec, sockets, signals to other processes,
  ptrace and namespaces kill the process (SIGSYS), so the call fails even if the reward
  code catches errors, and no child can outlive it;
- everything else (open, stat, getcwd, uname, getppid, prlimit, ioctl, …) fails with EPERM.

Exactly one line goes to the result channel: ``MARK {"values": [...]}`` or
``MARK {"error": "..."}``. This file runs without site-packages and imports nothing from
the package.
"""

from __future__ import annotations

import json
import os
import resource
import struct
import sys
from typing import Any, NoReturn

RESULT_MARK = "@@GRADIENTS_REWARD@@"

# What a reward function may import: loaded before the filter, since nothing can be read
# from disk afterwards (an import of anything else fails with ModuleNotFoundError).
PRELOAD = (
    "ast", "bisect", "collections", "copy", "dataclasses", "datetime", "decimal", "difflib",
    "enum", "fractions", "functools", "heapq", "inspect", "itertools", "json", "math",
    "operator", "random", "re", "statistics", "string", "textwrap", "typing", "unicodedata",
)

# Why a module that is not preloaded cannot be imported, for the reward's error message.
_REFUSED = {
    **dict.fromkeys(("socket", "ssl", "http", "urllib", "ftplib", "smtplib", "asyncio", "selectors"),
                    "network access is blocked"),
    **dict.fromkeys(("subprocess", "multiprocessing", "pty", "concurrent", "threading", "_posixsubprocess"),
                    "process and thread creation is blocked"),
    **dict.fromkeys(("ctypes", "_ctypes", "mmap"), "native code access is blocked"),
}


class _Refuse:
    """The last import finder: a module nobody found gets a message that says why."""

    @staticmethod
    def find_spec(name: str, path: Any = None, target: Any = None) -> None:
        why = _REFUSED.get(name.partition(".")[0])
        if why is None:
            why = "reward code can import only " + ", ".join(PRELOAD)
        raise ModuleNotFoundError(f"no module {name!r} in the reward sandbox: {why}", name=name)


# Syscall numbers: (x86_64, aarch64); None where the architecture has no such call.
_Numbers = dict[str, tuple[int, "int | None"]]
_ALLOW: _Numbers = {
    "read": (0, 63), "close": (3, 57), "fstat": (5, 80), "lseek": (8, 62),
    "mmap": (9, 222), "mprotect": (10, 226), "munmap": (11, 215), "brk": (12, 214),
    "mremap": (25, 216), "madvise": (28, 233), "rt_sigaction": (13, 134),
    "rt_sigprocmask": (14, 135), "rt_sigreturn": (15, 139), "sigaltstack": (131, 132),
    "futex": (202, 98), "sched_yield": (24, 124), "getpid": (39, 172), "gettid": (186, 178),
    "clock_gettime": (228, 113), "clock_getres": (229, 114), "clock_nanosleep": (230, 115),
    "nanosleep": (35, 101), "gettimeofday": (96, 169), "getrandom": (318, 278),
    "restart_syscall": (219, 128), "rseq": (334, 293), "exit": (60, 93), "exit_group": (231, 94),
}
# Allowed only on the file descriptors given to install_filter (stdout, stderr, result).
_WRITE: _Numbers = {"write": (1, 64), "writev": (20, 66)}
# Never legitimate in a reward: the process is killed so the call fails.
_KILL: _Numbers = {
    "fork": (57, None), "vfork": (58, None), "clone": (56, 220), "clone3": (435, 435),
    "execve": (59, 221), "execveat": (322, 281), "socket": (41, 198), "socketpair": (53, 199),
    "connect": (42, 203), "bind": (49, 200), "listen": (50, 201), "accept": (43, 202),
    "accept4": (288, 242), "sendto": (44, 206), "recvfrom": (45, 207), "sendmsg": (46, 211),
    "recvmsg": (47, 212), "kill": (62, 129), "tkill": (200, 130), "tgkill": (234, 131),
    "rt_sigqueueinfo": (129, 138), "rt_tgsigqueueinfo": (297, 240), "pidfd_open": (434, 434),
    "pidfd_send_signal": (424, 424), "pidfd_getfd": (438, 438), "ptrace": (101, 117),
    "process_vm_readv": (310, 270), "process_vm_writev": (311, 271), "unshare": (272, 97),
    "setns": (308, 268),
}
_ARCHES = {"x86_64": (0, 0xC000003E, 317), "aarch64": (1, 0xC00000B7, 277)}  # column, AUDIT_ARCH, seccomp

_RET_KILL_PROCESS, _RET_ERRNO, _RET_ALLOW = 0x80000000, 0x00050000, 0x7FFF0000
_EPERM = 1
_LD_ABS, _JEQ, _RET = 0x20, 0x15, 0x06  # BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, BPF_RET|BPF_K
_NR, _ARCH, _ARG0 = 0, 4, 16  # offsets in struct seccomp_data (little-endian)


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def build_filter(machine: str, writable_fds: tuple[int, ...]) -> bytes:
    """The BPF program: the architecture check, then the syscall rules, default EPERM."""
    column, audit_arch, _ = _ARCHES[machine]
    prog = [_insn(_LD_ABS, _ARCH), _insn(_JEQ, audit_arch, 1, 0), _insn(_RET, _RET_KILL_PROCESS),
            _insn(_LD_ABS, _NR)]
    fds = sorted(set(writable_fds))
    for numbers in _WRITE.values():
        nr = numbers[column]
        assert nr is not None
        block = [_insn(_LD_ABS, _ARG0)]
        block += [_insn(_JEQ, fd, len(fds) - i, 0) for i, fd in enumerate(fds)]
        block += [_insn(_RET, _RET_ERRNO | _EPERM), _insn(_RET, _RET_ALLOW)]
        prog += [_insn(_JEQ, nr, 0, len(block)), *block]
    for table, action in ((_KILL, _RET_KILL_PROCESS), (_ALLOW, _RET_ALLOW)):
        for numbers in table.values():
            nr = numbers[column]
            if nr is not None:
                prog += [_insn(_JEQ, nr, 0, 1), _insn(_RET, action)]
    prog.append(_insn(_RET, _RET_ERRNO | _EPERM))
    return b"".join(prog)


def install_filter(writable_fds: tuple[int, ...]) -> None:
    """Installs the filter on this process (all threads); raises OSError when the kernel refuses."""
    import ctypes

    machine = os.uname().machine
    if machine not in _ARCHES:
        raise OSError(f"no seccomp filter for the {machine} architecture")
    program = build_filter(machine, writable_fds)

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]

    prog = SockFprog(len(program) // 8, program)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(38, ctypes.c_ulong(1), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    # SECCOMP_SET_MODE_FILTER with SECCOMP_FILTER_FLAG_TSYNC.
    if libc.syscall(ctypes.c_long(_ARCHES[machine][2]), ctypes.c_ulong(1), ctypes.c_ulong(1),
                    ctypes.byref(prog)) != 0:
        raise OSError(ctypes.get_errno(), "seccomp(SECCOMP_SET_MODE_FILTER) failed")
    for name in [m for m in sys.modules if m == "ctypes" or m.startswith(("ctypes.", "_ctypes"))]:
        del sys.modules[name]


# Audit events worth a line of explanation before the kernel stops the process.
_NOTES = (
    (("socket.",), "network access is blocked"),
    (("os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
      "subprocess.", "pty."), "process creation is blocked"),
    (("os.kill", "os.killpg", "signal.pthread_kill"), "signals are blocked"),
)


def _note(event: str, args: tuple[Any, ...]) -> None:
    for prefixes, words in _NOTES:
        if event.startswith(prefixes):
            os.write(2, f"\nsandbox: {words} ({event})\n".encode())


def _call(request: dict[str, Any], code: Any, filename: str) -> list[Any]:
    import inspect

    ns: dict[str, Any] = {"__name__": "reward_module", "__builtins__": __builtins__}
    exec(code, ns)
    fn = ns.get(request["name"])
    if not callable(fn):
        funcs = [v for v in ns.values() if inspect.isfunction(v) and v.__code__.co_filename == filename]
        if not funcs:
            raise ValueError("the reward source defines no function")
        fn = funcs[-1]
    kwargs: dict[str, Any] = {"prompts": request["prompts"], "extra_data": request["extra"]}
    try:
        params = inspect.signature(fn).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            kwargs = {k: v for k, v in kwargs.items() if k in params}
    except (TypeError, ValueError):
        pass
    values = list(fn(request["completions"], **kwargs))
    if len(values) != len(request["completions"]):
        raise ValueError(f"the reward returned {len(values)} values for {len(request['completions'])} completions")
    return [None if v is None else float(v) for v in values]


def _describe(exc: BaseException, filename: str) -> str:
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    where = f" (line {line})" if line else ""
    return f"{type(exc).__name__}: {exc}{where}"[:500]


def main() -> None:
    request = json.loads(sys.stdin.buffer.read())
    os.close(0)
    out_fd = os.dup(1)
    os.dup2(2, 1)  # print() in the reward goes to stderr; the result channel stays private
    mem = int(request["memory_mb"]) << 20
    cpu = int(request["cpu_s"])
    for limit, value in ((resource.RLIMIT_AS, mem), (resource.RLIMIT_FSIZE, 0),
                         (resource.RLIMIT_CORE, 0), (resource.RLIMIT_NPROC, 0)):
        resource.setrlimit(limit, (value, value))
    # SIGXCPU at the soft limit names the cause; the hard limit (SIGKILL) is the backstop.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 2))
    for module in PRELOAD + ("ctypes",):  # ctypes installs the filter, then is unloaded
        __import__(module)
    filename = f"<reward:{request['name']}>"
    payload: dict[str, Any]
    try:
        code = compile(request["source"], filename, "exec")
    except BaseException as exc:
        _finish(out_fd, {"error": _describe(exc, filename)}, 1)
    resource.setrlimit(resource.RLIMIT_NOFILE, (out_fd + 1, out_fd + 1))
    try:
        install_filter(writable_fds=(1, 2, out_fd))
    except OSError as exc:  # fail closed: no filter, no reward
        _finish(out_fd, {"unavailable": f"cannot install the seccomp filter: {exc}"}, 1)
    sys.addaudithook(_note)
    sys.meta_path.append(_Refuse())
    try:
        payload, status = {"values": _call(request, code, filename)}, 0
    except BaseException as exc:  # the reward's own failure, whatever it raised
        payload, status = {"error": _describe(exc, filename)}, 1
    _finish(out_fd, payload, status)


def _finish(out_fd: int, payload: dict[str, Any], status: int) -> NoReturn:
    line = (RESULT_MARK + json.dumps(payload) + "\n").encode()
    while line:
        line = line[os.write(out_fd, line):]
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    main()
