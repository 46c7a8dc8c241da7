#!/usr/bin/env python3
"""Checks the pod templates in rendered manifests against the "restricted" Pod Security Standard
(https://kubernetes.io/docs/concepts/security/pod-security-standards/, baseline + restricted
controls as of policy version latest). Offline stand-in for a namespace labelled
pod-security.kubernetes.io/enforce=restricted.

Usage: pss_restricted.py MANIFEST.yaml...   (needs PyYAML, e.g. on PYTHONPATH)
"""

import sys

import yaml

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}


def check_pod(spec):
    errors = []
    psc = spec.get("securityContext") or {}
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(host):
            errors.append(f"{host} is true")
    for v in spec.get("volumes") or []:
        kinds = set(v) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            errors.append(f"volume {v.get('name')}: type {sorted(kinds - ALLOWED_VOLUMES)} not allowed")
    for s in psc.get("sysctls") or []:
        if s.get("name") not in SAFE_SYSCTLS:
            errors.append(f"sysctl {s.get('name')} not allowed")
    containers = [("container", c) for c in spec.get("containers") or []]
    containers += [("initContainer", c) for c in spec.get("initContainers") or []]
    containers += [("ephemeralContainer", c) for c in spec.get("ephemeralContainers") or []]
    if not containers:
        errors.append("no containers")

    def effective(c, key):
        csc = c.get("securityContext") or {}
        return csc[key] if key in csc else psc.get(key)

    for kind, c in containers:
        name = f"{kind} {c.get('name')}"
        csc = c.get("securityContext") or {}
        if csc.get("privileged"):
            errors.append(f"{name}: privileged")
        caps = csc.get("capabilities") or {}
        if not set(caps.get("add") or []) <= {"NET_BIND_SERVICE"}:
            errors.append(f"{name}: adds capabilities {caps.get('add')}")
        if "ALL" not in (caps.get("drop") or []):
            errors.append(f"{name}: does not drop ALL capabilities")
        if csc.get("allowPrivilegeEscalation") is not False:
            errors.append(f"{name}: allowPrivilegeEscalation is not false")
        if effective(c, "runAsNonRoot") is not True:
            errors.append(f"{name}: runAsNonRoot is not true")
        if effective(c, "runAsUser") == 0:
            errors.append(f"{name}: runAsUser is 0")
        seccomp = (effective(c, "seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            errors.append(f"{name}: seccompProfile.type is {seccomp!r}, not RuntimeDefault or Localhost")
        if csc.get("procMount", "Default") != "Default":
            errors.append(f"{name}: procMount {csc.get('procMount')}")
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                errors.append(f"{name}: hostPort {p['hostPort']}")
        for ctx in (psc, csc):
            apparmor = (ctx.get("appArmorProfile") or {}).get("type")
            if apparmor not in (None, "RuntimeDefault", "Localhost"):
                errors.append(f"{name}: appArmorProfile {apparmor}")
            se = ctx.get("seLinuxOptions") or {}
            if se.get("type", "") not in SELINUX_TYPES or se.get("user") or se.get("role"):
                errors.append(f"{name}: seLinuxOptions {se}")
    return errors


def main(paths):
    failed = False
    pods = 0
    for path in paths:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for d in docs:
            kind = d.get("kind")
            if kind == "Pod":
                spec = d.get("spec") or {}
            elif kind in WORKLOADS:
                spec = ((d.get("spec") or {}).get("template") or {}).get("spec") or {}
            elif kind == "CronJob":
                spec = d["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            else:
                continue
            pods += 1
            name = f"{path}: {kind}/{d['metadata']['name']}"
            errors = check_pod(spec)
            for e in errors:
                print(f"ERROR {name}: {e}")
            if errors:
                failed = True
            else:
                print(f"OK    {name} meets the restricted Pod Security Standard")
    if pods == 0:
        print("ERROR no pod templates found")
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
