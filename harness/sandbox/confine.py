"""Least privilege for a submission worker, after its mounts are set up (Linux).

:func:`drop_privileges` runs in the worker before any submission code and is one-way:

1. **Capabilities**: every capability is removed from the bounding set, the ambient set is
   cleared, and the permitted/effective/inheritable sets are zeroed (``capset``), so the
   worker can no longer change its mounts, namespaces or identity even inside its own user
   namespace.  Where the harness runs as root the worker also switches to an unmapped
   sandbox uid/gid first (see :mod:`harness.sandbox.worker`), which clears them as well and makes
   ``RLIMIT_NPROC`` apply (the kernel never limits real root's process count).
2. ``PR_SET_NO_NEW_PRIVS``: no ``execve`` can gain privileges again (set-uid programs,
   file capabilities).
3. **seccomp** (a small classic-BPF program, no libseccomp needed): the calls below fail
   with ``EPERM``; anything else is allowed.  The filter is inherited by every thread and
   child and cannot be removed.

   - mounts and roots: ``mount umount2 pivot_root chroot open_tree move_mount fsopen
     fsconfig fsmount fspick mount_setattr``
   - namespaces: ``unshare setns`` and ``clone`` with any ``CLONE_NEW*`` flag; ``clone3``
     (whose flags a filter cannot read) fails with ``ENOSYS`` so libc falls back to ``clone``
   - other processes: ``ptrace process_vm_readv process_vm_writev kcmp pidfd_getfd
     process_madvise``
   - the kernel: ``init_module finit_module delete_module kexec_load kexec_file_load bpf
     perf_event_open userfaultfd iopl ioperm swapon swapoff reboot acct quotactl
     settimeofday clock_settime adjtimex sethostname setdomainname vhangup
     open_by_handle_at name_to_handle_at``
   - keyrings: ``add_key request_key keyctl``
   - io_uring (whose operations bypass seccomp): ``io_uring_setup io_uring_enter
     io_uring_register``
   - network: ``socket`` for every address family but ``AF_UNIX`` (the worker's network
     namespace has no interface up anyway, and its abstract socket namespace is its own)
   - on x86-64, every x32-ABI call (numbers with bit 30 set); a foreign architecture's
     call kills the process.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct

PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, PR_CAP_AMBIENT = 24, 38, 22, 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO, SECCOMP_RET_KILL_PROCESS = 0x7FFF0000, 0x00050000, 0x80000000
_LD_W_ABS, _JEQ_K, _JGE_K, _JSET_K, _RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
AF_UNIX = 1
CLONE_NS_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000

#: calls refused with EPERM (names; numbers per architecture below)
DENIED = ("mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount",
          "fspick", "mount_setattr", "unshare", "setns", "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
          "pidfd_getfd", "process_madvise", "init_module", "finit_module", "delete_module", "kexec_load",
          "kexec_file_load", "bpf", "perf_event_open", "userfaultfd", "iopl", "ioperm", "swapon", "swapoff",
          "reboot", "acct", "quotactl", "settimeofday", "clock_settime", "adjtimex", "sethostname",
          "setdomainname", "vhangup", "open_by_handle_at", "name_to_handle_at", "add_key", "request_key", "keyctl",
          "io_uring_setup", "io_uring_enter", "io_uring_register")

_COMMON = {"io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428,
           "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "clone3": 435,
           "pidfd_getfd": 438, "process_madvise": 440, "mount_setattr": 442}
SYSCALLS = {
    "x86_64": {**_COMMON, "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "unshare": 272,
               "setns": 308, "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312,
               "init_module": 175, "finit_module": 313, "delete_module": 176, "kexec_load": 246,
               "kexec_file_load": 320, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323, "iopl": 172,
               "ioperm": 173, "swapon": 167, "swapoff": 168, "reboot": 169, "acct": 163, "quotactl": 179,
               "settimeofday": 164, "clock_settime": 227, "adjtimex": 159, "sethostname": 170,
               "setdomainname": 171, "vhangup": 153, "open_by_handle_at": 304, "name_to_handle_at": 303,
               "add_key": 248, "request_key": 249, "keyctl": 250, "socket": 41, "clone": 56},
    "aarch64": {**_COMMON, "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51, "unshare": 97,
                "setns": 268, "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "kcmp": 272,
                "init_module": 105, "finit_module": 273, "delete_module": 106, "kexec_load": 104,
                "kexec_file_load": 294, "bpf": 280, "perf_event_open": 241, "userfaultfd": 282,
                "swapon": 224, "swapoff": 225, "reboot": 142, "acct": 89, "quotactl": 60, "settimeofday": 170,
                "clock_settime": 112, "adjtimex": 171, "sethostname": 161, "setdomainname": 162, "vhangup": 58,
                "open_by_handle_at": 265, "name_to_handle_at": 264, "add_key": 217, "request_key": 218,
                "keyctl": 219, "socket": 198, "clone": 220},
}
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}


def _ins(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k & 0xFFFFFFFF)


def seccomp_program(machine: str | None = None) -> bytes:
    """The filter as packed ``struct sock_filter`` instructions for ``machine`` (default: this one)."""
    machine = machine or platform.machine()
    nrs = SYSCALLS[machine]
    eperm, allow = SECCOMP_RET_ERRNO | errno.EPERM, SECCOMP_RET_ALLOW
    prog = [_ins(_LD_W_ABS, 0, 0, 4), _ins(_JEQ_K, 1, 0, AUDIT_ARCH[machine]), _ins(_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),
            _ins(_LD_W_ABS, 0, 0, 0)]
    if machine == "x86_64":  # the x32 ABI: same arch value, numbers | 0x40000000
        prog += [_ins(_JGE_K, 0, 1, 0x40000000), _ins(_RET_K, 0, 0, eperm)]
    for name in DENIED:
        if name in nrs:
            prog += [_ins(_JEQ_K, 0, 1, nrs[name]), _ins(_RET_K, 0, 0, eperm)]
    prog += [_ins(_JEQ_K, 0, 1, nrs["clone3"]), _ins(_RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.ENOSYS)]
    # clone: refused when flags (args[0], low word at offset 16) ask for a new namespace
    prog += [_ins(_JEQ_K, 0, 4, nrs["clone"]), _ins(_LD_W_ABS, 0, 0, 16), _ins(_JSET_K, 0, 1, CLONE_NS_FLAGS),
             _ins(_RET_K, 0, 0, eperm), _ins(_RET_K, 0, 0, allow)]
    # socket: only AF_UNIX (args[0])
    prog += [_ins(_JEQ_K, 0, 4, nrs["socket"]), _ins(_LD_W_ABS, 0, 0, 16), _ins(_JEQ_K, 1, 0, AF_UNIX),
             _ins(_RET_K, 0, 0, eperm), _ins(_RET_K, 0, 0, allow)]
    prog.append(_ins(_RET_K, 0, 0, allow))
    return b"".join(prog)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def drop_bounding_set(libc=None) -> None:
    """Empty the bounding set (needs CAP_SETPCAP: call it before giving up capabilities)."""
    libc = libc or _libc()
    for cap in range(64):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            e = ctypes.get_errno()
            if e == errno.EINVAL:  # past the last capability this kernel knows
                break
            raise OSError(e, f"prctl(PR_CAPBSET_DROP, {cap}): {os.strerror(e)}")


def drop_capabilities(libc=None) -> None:
    """Empty the bounding and ambient sets, then zero permitted/effective/inheritable."""
    libc = libc or _libc()
    if _status_hex("CapBnd") != 0:
        drop_bounding_set(libc)
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    hdr = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    _check(libc.capset(ctypes.byref(hdr), data), "capset")


def install_seccomp(libc=None) -> None:
    libc = libc or _libc()
    code = seccomp_program()
    buf = ctypes.create_string_buffer(code, len(code))
    prog = _SockFprog(len(code) // 8, ctypes.cast(buf, ctypes.c_void_p))
    _check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0), "prctl(PR_SET_SECCOMP)")


def _status_hex(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1], 16)
    return -1  # pragma: no cover


def effective_capabilities() -> int:
    return _status_hex("CapEff")


def drop_privileges(seccomp: bool = True) -> list[str]:
    """Capabilities, no-new-privs and (``seccomp``) the filter; returns the layers set.
    Raises OSError when a step fails: a worker never runs submission code half-confined."""
    libc = _libc()
    drop_capabilities(libc)
    if any(_status_hex(f) != 0 for f in ("CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb")):
        raise OSError(errno.EPERM, "capabilities are left after dropping them")
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    layers = ["no-capabilities", "no-new-privs"]
    if seccomp:
        if platform.machine() not in SYSCALLS:
            raise OSError(errno.ENOSYS, f"no seccomp filter for architecture {platform.machine()}")
        install_seccomp(libc)
        layers.append("seccomp")
    return layers
