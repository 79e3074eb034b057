#!/usr/bin/env bash
# Builds stand-ins for the base images the Dockerfiles and docker-compose.yml name, from Debian's own packages,
# for a machine that reaches Debian's archive but no container registry (air-gapped or mirrored sites).
# Each stand-in is tagged under localhost/ and printed as NAME=IMAGE for the build (deploy/images/build.py).
#
#   deploy/images/offline_bases.sh ENGINE python|node|redis
#
#   python  python3.11 from Debian bookworm, laid out like python:3.11-slim-bookworm (/usr/local/bin/python)
#   node    Node.js 20 and npm from Debian trixie (bookworm's Node 18 is too old for the app's Vite)
#   redis   redis-server from Debian bookworm (7.0, BSD licence), run as the redis user
set -euo pipefail
engine=${1:?engine (docker or podman)}
which=${2:?python, node or redis}

case $which in
  python) suite=bookworm packages=python3,python3-pip,python3-venv,ca-certificates tag=localhost/python:3.11-slim-bookworm
          steps=('RUN ln -sf /usr/bin/python3 /usr/local/bin/python && ln -sf /usr/bin/pip3 /usr/local/bin/pip'
                 'ENV LANG=C.UTF-8' 'CMD ["python3"]') ;;
  node)   suite=trixie packages=nodejs,npm,ca-certificates tag=localhost/node:20-trixie-slim
          steps=('ENV LANG=C.UTF-8 NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' 'CMD ["node"]') ;;
  redis)  suite=bookworm packages=redis-server,redis-tools tag=localhost/redis:7.0-bookworm
          steps=('RUN mkdir -p /data && chown redis:redis /data' 'WORKDIR /data' 'USER redis' 'EXPOSE 6379'
                 'CMD ["redis-server", "--protected-mode", "no"]') ;;
  *) echo "unknown base '$which' (python, node or redis)" >&2; exit 2 ;;
esac

if ! "$engine" image inspect "$tag" >/dev/null 2>&1; then
  command -v mmdebstrap >/dev/null || { echo "offline bases need mmdebstrap (apt-get install mmdebstrap)" >&2; exit 1; }
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  mmdebstrap --quiet --variant=minbase --include="$packages" "$suite" "$work/rootfs.tar"
  "$engine" import "$work/rootfs.tar" "$tag-rootfs" >/dev/null
  { echo "FROM $tag-rootfs"; printf '%s\n' "${steps[@]}"; } > "$work/Containerfile"
  "$engine" build --quiet -t "$tag" "$work" >/dev/null
  "$engine" rmi "$tag-rootfs" >/dev/null 2>&1 || true
fi
echo "$tag"
