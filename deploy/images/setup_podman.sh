#!/usr/bin/env bash
# Makes a Debian machine without a Docker daemon able to build and run the images: Podman, Buildah, runc,
# mmdebstrap (for offline base images) and the CNI DNS plugin. Idempotent. Needs root (or sudo).
# runc rather than crun: crun refuses to start containers on cgroup v1 hosts. Containers inherit the host's
# resource limits (default_ulimits empty): some sandboxes refuse rlimit changes.
# Names: Debian's Podman 4.3 runs its networks on CNI, where only the dnsname plugin (with dnsmasq) answers name
# look-ups inside a network; without it the compose services cannot find each other (redis, asr, ...). The backend
# is named in containers.conf so an installed netavark cannot switch it under existing networks.
set -euo pipefail
sudo_cmd=()
[ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
need=()
for p in podman buildah runc uidmap mmdebstrap golang-github-containernetworking-plugin-dnsname; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
conf=$(printf '%s\n' '[containers]' 'default_ulimits = []' '[engine]' 'runtime = "runc"' '[network]' \
  'network_backend = "cni"')
if [ "$(cat /etc/containers/containers.conf 2>/dev/null)" != "$conf" ]; then
  "${sudo_cmd[@]}" mkdir -p /etc/containers
  echo "$conf" | "${sudo_cmd[@]}" tee /etc/containers/containers.conf >/dev/null
fi
podman --version
