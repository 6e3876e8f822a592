"""Hosts on one machine: network namespaces of our own, each with one address on a bridge we make
(`up --hosts` for the brokers and PostgreSQL, the supervisor for each worker instance), and the
network faults chaos puts between them with nftables. Only names that start with PREFIX and the
one bridge are ever made or removed, and nothing is routed off the machine: the bridge has no
uplink and the namespaces no default route."""

from __future__ import annotations

import shutil
import subprocess

from infra.procs import InfraError

PREFIX = "ob-"  # every namespace made here, and so every one `remove_all` removes
BRIDGE = "ob-br0"
SUBNET = "10.213.0"  # a /24 of our own; .1 is the bridge (the machine itself)
GATEWAY = f"{SUBNET}.1"
CHAOS_TABLE = "orderbus_chaos"  # the nftables table a fault lives in, inside one namespace
# a host's one cable to the bridge: a fault is on it, never on the host's own loopback (a node
# cut off from every other host still reaches its own listeners)
LINK = '"eth0"'


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise InfraError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def available() -> str | None:
    """Why hosts cannot be made here, or None when they can."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` is missing"
    if shutil.which("nft") is None:
        return "nftables' `nft` is missing (make install puts it in, as root)"
    probe = _ip("netns", "list", check=False)
    if probe.returncode != 0:
        return f"network namespaces are not allowed here: {probe.stderr.strip()}"
    return None


def namespaces() -> list[str]:
    out = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(PREFIX)]


def address(last: int) -> str:
    return f"{SUBNET}.{last}"


def ensure(name: str, last: int) -> str:
    """Namespace `name` with address SUBNET.`last` on the bridge (made the first time); its
    address."""
    if not name.startswith(PREFIX):
        raise ValueError(f"namespace {name!r} is not ours (no {PREFIX!r} prefix)")
    if _ip("link", "show", BRIDGE, check=False).returncode != 0:
        _ip("link", "add", BRIDGE, "type", "bridge")
        _ip("addr", "add", f"{GATEWAY}/24", "dev", BRIDGE)
        _ip("link", "set", BRIDGE, "up")
    if name in namespaces():
        return address(last)
    outside = f"obv{last}"  # the bridge's end of the cable (at most 15 characters)
    _ip("link", "del", outside, check=False)  # left by a namespace removed without its cable
    _ip("netns", "add", name)
    _ip("link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", name)
    _ip("link", "set", outside, "master", BRIDGE, "up")
    _ip("-n", name, "addr", "add", f"{address(last)}/24", "dev", "eth0")
    _ip("-n", name, "link", "set", "eth0", "up")
    _ip("-n", name, "link", "set", "lo", "up")
    return address(last)


def remove(name: str) -> None:
    if name in namespaces():
        _ip("netns", "del", name)  # its end of the cable goes with it, and so the other end


def remove_all() -> list[str]:
    """Every namespace of ours and the bridge, whoever left them (a crashed run too)."""
    gone = namespaces()
    for name in gone:
        remove(name)
    _ip("link", "del", BRIDGE, check=False)
    return gone


def inside(name: str | None, argv: list[str], user: str | None = None) -> list[str]:
    """argv run in namespace `name` (as `user`): `ip netns exec` and setpriv both exec, so the
    program keeps the pid it is started with."""
    if name is None:
        return argv
    as_user = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups"] if user else []
    return ["ip", "netns", "exec", name, *as_user, *argv]


# -- faults, each an nftables table inside one namespace, gone when it is healed


def _nft(name: str, script: str) -> None:
    proc = subprocess.run(
        ["ip", "netns", "exec", name, "nft", "-f", "-"],
        input=script,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise InfraError(f"nft in {name}: {proc.stderr.strip()}")


def cut(name: str, peers: list[str], inbound: bool = True, outbound: bool = True) -> None:
    """Drop what `name` receives from `peers` (inbound) and what it sends them (outbound), on
    its link."""
    heal(name)
    rules = []
    if inbound:
        rules.append(
            f"add rule inet {CHAOS_TABLE} input iifname {LINK} ip saddr {{ {', '.join(peers)} }} "
            "drop"
        )
    if outbound:
        rules.append(
            f"add rule inet {CHAOS_TABLE} output oifname {LINK} ip daddr {{ {', '.join(peers)} }} "
            "drop"
        )
    _nft(name, _table() + "\n".join(rules) + "\n")


def lossy(name: str, percent: int) -> None:
    """Drop `percent` % of what `name` sends and receives on its link, at random."""
    heal(name)
    rules = [
        f"add rule inet {CHAOS_TABLE} {hook} {way} {LINK} numgen random mod 100 < {percent} drop"
        for hook, way in (("input", "iifname"), ("output", "oifname"))
    ]
    _nft(name, _table() + "\n".join(rules) + "\n")


def heal(name: str) -> None:
    subprocess.run(
        ["ip", "netns", "exec", name, "nft", "delete", "table", "inet", CHAOS_TABLE],
        capture_output=True,
    )


def _table() -> str:
    return (
        f"add table inet {CHAOS_TABLE}\n"
        f"add chain inet {CHAOS_TABLE} input {{ type filter hook input priority 0; }}\n"
        f"add chain inet {CHAOS_TABLE} output {{ type filter hook output priority 0; }}\n"
    )
