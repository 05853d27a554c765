#!/usr/bin/env bash
# Builds the local Kubernetes control plane the `kube` tests run against, from Go modules:
#   kube-apiserver, kube-scheduler  k8s.io/kubernetes  (wrapper module, staging modules replaced)
#   etcd                            go.etcd.io/etcd/server/v3
#   kwok                            sigs.k8s.io/kwok/cmd/kwok
# into ${A3S_KUBE_CACHE:-~/.cache/a3s-kube}/<kube version>/bin. A binary already there is kept,
# so a second run takes seconds. Without Go it says so and exits 0: the kube tests then skip.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
root=${A3S_KUBE_CACHE:-$HOME/.cache/a3s-kube}/$KUBE_VERSION
bin=$root/bin
mkdir -p "$bin" "$root/src"

if ! command -v go >/dev/null 2>&1; then
    echo "tests/kube/build.sh: no Go on PATH; the kube tests will skip" >&2
    exit 0
fi

export CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false" GOTOOLCHAIN=local
ldflags="-s -w"
t_all=$(date +%s)

RECIPE=2  # bump when the recipe changes: binaries built by an older one are rebuilt
stamp() { echo "$bin/.$1.$2.r$RECIPE"; }

# build NAME VERSION_STAMP WRAPPER_DIR PKG: builds PKG inside WRAPPER_DIR to bin/NAME.
build() {
    local name=$1 ver=$2 dir=$3 pkg=$4 t0
    if [[ -x $bin/$name && -e $(stamp "$name" "$ver") ]]; then
        echo "$name $ver: cached"
        return
    fi
    t0=$(date +%s)
    (cd "$dir" && go build -ldflags="$ldflags" -o "$bin/$name.tmp" "$pkg")
    mv "$bin/$name.tmp" "$bin/$name"
    rm -f "$bin/.$name".*
    touch "$(stamp "$name" "$ver")"
    echo "$name $ver: built in $(( $(date +%s) - t0 ))s"
}

# --- etcd -------------------------------------------------------------------------------------
# quiet CMD...: its output only if it fails (go get lists every module it adds).
quiet() {
    local out
    if ! out=$("$@" 2>&1); then
        echo "$out" >&2
        return 1
    fi
}

need() { [[ ! -x $bin/$1 || ! -e $(stamp "$1" "$2") ]]; }

if need etcd "$ETCD_VERSION"; then
    d=$root/src/etcd
    rm -rf "$d"; mkdir -p "$d"
    (cd "$d" && go mod init a3s.local/etcd-build >/dev/null 2>&1 \
        && quiet go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION")
    build etcd "$ETCD_VERSION" "$d" go.etcd.io/etcd/server/v3
else
    echo "etcd $ETCD_VERSION: cached"
fi

# --- kwok -------------------------------------------------------------------------------------
if need kwok "$KWOK_VERSION"; then
    d=$root/src/kwok
    rm -rf "$d"; mkdir -p "$d"
    (cd "$d" && go mod init a3s.local/kwok-build >/dev/null 2>&1 \
        && quiet go get "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION")
    build kwok "$KWOK_VERSION" "$d" sigs.k8s.io/kwok/cmd/kwok
else
    echo "kwok $KWOK_VERSION: cached"
fi

# kwok's stages (what it does to nodes and pods, and when) are YAML in its module: the
# ones kwokctl uses by default. controlplane.py hands them to kwok with --config.
stages=$bin/kwok-stages
if [[ ! -e $stages/.$KWOK_VERSION ]]; then
    kwok_dir=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
    rm -rf "$stages"; mkdir -p "$stages"
    for f in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
             pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
        cp "$kwok_dir/kustomize/stage/$f.yaml" "$stages/"
    done
    chmod u+w "$stages"/*.yaml
    touch "$stages/.$KWOK_VERSION"
fi

# --- kube-apiserver, kube-scheduler -----------------------------------------------------------
if need kube-apiserver "$KUBE_VERSION" || need kube-scheduler "$KUBE_VERSION"; then
    d=$root/src/kubernetes
    rm -rf "$d"; mkdir -p "$d"
    # k8s.io/kubernetes requires its staging modules (k8s.io/api, ...) at v0.0.0 and replaces
    # them with ./staging paths, which a dependent module cannot see: replace each with the
    # release published alongside (v1.X.Y -> v0.X.Y).
    staging=v0${KUBE_VERSION#v1}
    gomod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    {
        echo "module a3s.local/kubernetes-build"
        echo
        grep -E '^go ' "$gomod"
        echo
        echo "require k8s.io/kubernetes $KUBE_VERSION"
        echo
        echo "replace ("
        awk '/^require|^\t/ && $2 == "v0.0.0" && $1 ~ /^k8s.io\// { print "\t" $1 " => " $1 " '"$staging"'" }' "$gomod"
        echo ")"
    } >"$d/go.mod"
    (cd "$d" && quiet go get "k8s.io/kubernetes/cmd/kube-apiserver@$KUBE_VERSION" \
        "k8s.io/kubernetes/cmd/kube-scheduler@$KUBE_VERSION")
    # what /version reports (a module build has no git tree to take it from)
    v=k8s.io/component-base/version
    minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
    ldflags="-s -w -X $v.gitVersion=$KUBE_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor \
        -X $v.gitTreeState=clean"
    build kube-apiserver "$KUBE_VERSION" "$d" k8s.io/kubernetes/cmd/kube-apiserver
    build kube-scheduler "$KUBE_VERSION" "$d" k8s.io/kubernetes/cmd/kube-scheduler
else
    echo "kube-apiserver, kube-scheduler $KUBE_VERSION: cached"
fi

echo "control plane in $bin ($(( $(date +%s) - t_all ))s)"
