#!/bin/bash
# Build a kind node image for this machine with no registry (`make kind-image` runs it):
#   DOCKER_HOST=unix:///run/docker-kind.sock hack/kind/build-node-image.sh [TAG]
# (default TAG kubefixtures.local/kind-node:<Kubernetes version>). Needs kind's dockerd
# (hack/kind/dockerd.sh), debootstrap, Go, and the local provider's Kubernetes and CoreDNS
# builds in the cache; builds kubeadm and etcd 3.6 into $KUBEFIXTURES_CACHE_DIR/kind once.
set -o errexit -o nounset -o pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "${HERE}/../.." && pwd)"
CACHE="${KUBEFIXTURES_CACHE_DIR:-${HOME}/.cache/kubefixtures}"
WORK="${CACHE}/kind"
CACHE_BIN="${CACHE}/bin"
K8S_MODULE="${REPO}/kubefixtures/cluster/local/_k8s"
VERSION="$(sed -n 's/^\s*k8s.io\/kubernetes \(v[0-9.]*\)$/\1/p' "${K8S_MODULE}/go.mod" | head -1)"
KUBE="${CACHE_BIN}/kubernetes-${VERSION}/kube"
COREDNS="$(ls "${CACHE_BIN}"/coredns-*/coredns | head -1)"
TAG="${1:-kubefixtures.local/kind-node:${VERSION}}"
: "${DOCKER_HOST:?point DOCKER_HOST at the kind dockerd (hack/kind/dockerd.sh)}"

log() { echo "build-node-image: $*" >&2; }

# 1. The node's root filesystem: Debian with systemd, containerd, runc, iptables, CNI plugins.
if [[ ! -x "${WORK}/rootfs/usr/bin/containerd" ]]; then
  log "debootstrap into ${WORK}/rootfs"
  debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,dbus,containerd,runc,iptables,iproute2,conntrack,ethtool,socat,kmod,ca-certificates,procps,mount,util-linux,containernetworking-plugins \
    bookworm "${WORK}/rootfs"
fi
if ! docker image inspect kubefixtures.local/kind-base:bookworm >/dev/null 2>&1; then
  log "importing the rootfs as kubefixtures.local/kind-base:bookworm"
  tar -C "${WORK}/rootfs" --numeric-owner -c . | docker import - kubefixtures.local/kind-base:bookworm
fi

# 2. kubeadm: not in the multi-call binary; built from the same module so versions match.
if [[ ! -x "${WORK}/kubeadm-${VERSION}" ]]; then
  log "building kubeadm ${VERSION}"
  build="$(mktemp -d)"
  cp "${K8S_MODULE}/go.mod" "${K8S_MODULE}/go.sum" "${build}/"
  ldflags="-s -w"
  for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    minor="${VERSION#v1.}"; minor="${minor%%.*}"
    ldflags+=" -X ${package}.gitVersion=${VERSION} -X ${package}.gitMajor=1"
    ldflags+=" -X ${package}.gitMinor=${minor} -X ${package}.gitTreeState=clean"
  done
  (cd "${build}" && GOFLAGS="-buildvcs=false -trimpath -mod=mod" \
    go build -o "${WORK}/kubeadm-${VERSION}" -ldflags "${ldflags}" k8s.io/kubernetes/cmd/kubeadm)
  rm -rf "${build}"
fi
KUBEADM="${WORK}/kubeadm-${VERSION}"

# etcd: kubeadm 1.35 runs etcd 3.6 (--feature-gates, /livez and /readyz probes); Debian's is 3.4.
ETCD_VERSION="$(sed -n 's/^require go.etcd.io\/etcd\/server\/v3 \(v[0-9.]*\)$/\1/p' "${HERE}/etcd/go.mod")"
ETCD="${WORK}/etcd-${ETCD_VERSION}"
if [[ ! -x "${ETCD}" ]]; then
  log "building etcd ${ETCD_VERSION}"
  (cd "${HERE}/etcd" && GOFLAGS="-buildvcs=false -trimpath" go build -o "${ETCD}" -ldflags "-s -w" .)
fi

# Nothing changed since the image was built: keep it (a rebuild takes a minute and 2 GB).
inputs="$( (cd "${HERE}" && find . -type f | sort | xargs sha256sum;
            stat -c '%n %s %Y' "${KUBE}" "${KUBEADM}" "${ETCD}" "${COREDNS}" /lib/x86_64-linux-gnu/libc.so.6) \
          | sha256sum | cut -c1-16)"
if [[ "$(docker image inspect -f '{{index .Config.Labels "kubefixtures.inputs"}}' "${TAG}" 2>/dev/null)" == "${inputs}" ]]; then
  echo "${TAG}"
  exit 0
fi

# 3. Control-plane images, each a single layer of our binaries plus the libc they link.
context="$(mktemp -d)"
trap 'rm -rf "${context}"' EXIT
mkdir -p "${context}/bin" "${context}/images"
cp -r "${HERE}/node/files" "${context}/files"
cp "${HERE}/node/Dockerfile" "${context}/"
cp "${KUBE}" "${context}/bin/kube"
cp "${KUBEADM}" "${context}/bin/kubeadm"
ln -s kube "${context}/bin/kubelet"
ln -s kube "${context}/bin/kubectl"
echo "${VERSION}" >"${context}/files/kind/version"

libs_of() { ldd "$@" 2>/dev/null | grep -o '/[^ ]*\.so[^ ]*' | sort -u; }

# layer DIR ROOT FILE...: copy FILEs (paths inside ROOT) and the libraries they need.
layer() {
  local dir=$1 root=$2; shift 2
  local file lib
  for file in "$@"; do
    mkdir -p "${dir}/$(dirname "${file}")"
    cp -L "${root}${file}" "${dir}${file}"
    for lib in $(chroot "${root}" ldd "${file}" 2>/dev/null | grep -o '/[^ ]*\.so[^ ]*' | sort -u); do
      mkdir -p "${dir}$(dirname "${lib}")"
      cp -L "${root}${lib}" "${dir}${lib}"
    done
  done
}

images=()
import_layer() { # TAG DIR ENTRYPOINT-JSON
  tar -C "$2" --numeric-owner --mtime=@0 --sort=name -c . | docker import -c "ENTRYPOINT $3" - "$1" >/dev/null
  images+=("$1")
}

log "making control-plane images"
kube_layer="$(mktemp -d)"
mkdir -p "${kube_layer}/usr/local/bin" "${kube_layer}/lib64" "${kube_layer}/lib/x86_64-linux-gnu"
cp "${KUBE}" "${kube_layer}/usr/local/bin/kube"
for name in kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
  ln -s kube "${kube_layer}/usr/local/bin/${name}"
done
# kube-proxy programs iptables (nft backend) from inside its pod: ship the node's tools.
layer "${kube_layer}" "${WORK}/rootfs" /usr/sbin/xtables-nft-multi /usr/sbin/conntrack /lib64/ld-linux-x86-64.so.2
for tool in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
  ln -s xtables-nft-multi "${kube_layer}/usr/sbin/${tool}"
done
cp -L /lib/x86_64-linux-gnu/libc.so.6 "${kube_layer}/lib/x86_64-linux-gnu/"
# iptables' match and target extensions: without them listing the node's nat table (Docker's
# own DNS rules are there) fails with "match extension not found".
# They link libraries of their own (libxt_statistic, kube-proxy's load balancing, needs libm).
layer "${kube_layer}" "${WORK}/rootfs" \
  $(cd "${WORK}/rootfs" && ls usr/lib/x86_64-linux-gnu/xtables/*.so | sed 's#^#/#')
for name in kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
  import_layer "registry.k8s.io/${name}:${VERSION}" "${kube_layer}" "[\"/usr/local/bin/${name}\"]"
done
rm -rf "${kube_layer}"

wanted="$("${KUBEADM}" config images list --kubernetes-version "${VERSION}")"
etcd_tag="$(grep '/etcd:' <<<"${wanted}")"
coredns_tag="$(grep '/coredns' <<<"${wanted}")"
pause_tag="$(grep '/pause:' <<<"${wanted}")"

small="$(mktemp -d)"
mkdir -p "${small}/usr/local/bin" "${small}/lib64" "${small}/lib/x86_64-linux-gnu" "${small}/etc"
cp -L /lib64/ld-linux-x86-64.so.2 "${small}/lib64/"
cp -L /lib/x86_64-linux-gnu/libc.so.6 "${small}/lib/x86_64-linux-gnu/"
cp "${ETCD}" "${small}/usr/local/bin/etcd"
import_layer "${etcd_tag}" "${small}" '["/usr/local/bin/etcd"]'
rm "${small}/usr/local/bin/etcd"
cp "${COREDNS}" "${small}/coredns"
import_layer "${coredns_tag}" "${small}" '["/coredns"]'
rm -rf "${small}"

docker load -i "${KUBEFIXTURES_IMAGES_DIR:-/root/.cache/kubefixtures/images}/pause.tar" >/dev/null
docker tag kubefixtures.local/pause:3.10 "${pause_tag}"
images+=("${pause_tag}")
sed -i "s#sandbox_image = .*#sandbox_image = \"${pause_tag}\"#" "${context}/files/etc/containerd/config.toml"

log "saving ${#images[@]} images"
docker save -o "${context}/images/control-plane.tar" "${images[@]}"

log "building ${TAG}"
docker build -q --label "kubefixtures.inputs=${inputs}" -t "${TAG}" "${context}" >/dev/null
# The images this replaced, in kind's own dockerd only.
docker image prune -f >/dev/null
echo "${TAG}"
