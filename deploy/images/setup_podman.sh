#!/usr/bin/env bash
# Makes a Debian machine without a Docker daemon able to build and run the images: Podman, Buildah, runc and
# mmdebstrap (for offline base images). Idempotent. Needs root (or sudo).
# runc rather than crun: crun refuses to start containers on cgroup v1 hosts. Containers inherit the host's
# resource limits (default_ulimits empty): some sandboxes refuse rlimit changes.
set -euo pipefail
sudo_cmd=()
[ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
need=()
for p in podman buildah runc uidmap mmdebstrap; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ ! -e /etc/containers/containers.conf ]; then
  "${sudo_cmd[@]}" mkdir -p /etc/containers
  printf '%s\n' '[containers]' 'default_ulimits = []' '[engine]' 'runtime = "runc"' \
    | "${sudo_cmd[@]}" tee /etc/containers/containers.conf >/dev/null
fi
podman --version
