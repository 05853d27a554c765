#!/usr/bin/env bash
# Build upstream llama.cpp's `llama-server` (C++) for this machine's CPU, from the llama.cpp
# tree that llama-cpp-python's source distribution on PyPI carries (vendor/llama.cpp): the
# same program the Kubernetes pods run from the ghcr.io image, with nothing but PyPI,
# Debian's cmake and a C++ compiler. Cached outside the work tree; a second run prints the
# cached binary's path at once.
#
#   plugins/a3s-engine-llamacpp/scripts/build-llama-server.sh [--optional]   # prints its path
#
# Environment: LLAMA_CPP_PYTHON_VERSION (the sdist, default below), A3S_ENGINE_CACHE
# (default ~/.cache/a3s-engines), CMAKE_BUILD_PARALLEL_LEVEL (default: every core),
# PIP (default: python3 -m pip).
# First build: about 15 minutes on 2 shared cores (see README); the result is one static
# binary, bin/llama-server, under $A3S_ENGINE_CACHE/llama-server-<version>/.
set -euo pipefail

OPTIONAL=0
[ "${1:-}" = "--optional" ] && OPTIONAL=1

VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
CACHE=${A3S_ENGINE_CACHE:-$HOME/.cache/a3s-engines}
PREFIX="$CACHE/llama-server-$VERSION"
BINARY="$PREFIX/bin/llama-server"

if [ -x "$BINARY" ]; then
  echo "$BINARY"
  exit 0
fi
for tool in cmake c++ make; do
  if ! command -v "$tool" >/dev/null; then
    echo "build-llama-server: $tool is missing (apt-get install cmake g++ make)" >&2
    # --optional (tox): no toolchain, no build; the tests that need the binary skip, saying so
    [ "$OPTIONAL" = 1 ] && exit 0
    exit 2
  fi
done

mkdir -p "$CACHE"
# One build at a time per version (several checkouts share the cache).
exec 9>"$CACHE/.llama-server-$VERSION.lock"
flock 9
if [ -x "$BINARY" ]; then
  echo "$BINARY"
  exit 0
fi

WORK="$CACHE/build/llama-server-$VERSION"
SDIST="$CACHE/src/llama_cpp_python-$VERSION.tar.gz"
if [ ! -s "$SDIST" ]; then
  mkdir -p "$CACHE/src"
  ${PIP:-python3 -m pip} download --quiet --no-deps --no-binary :all: \
    "llama-cpp-python==$VERSION" -d "$CACHE/src" >&2
fi
if [ ! -f "$WORK/src/CMakeLists.txt" ]; then
  rm -rf "$WORK" && mkdir -p "$WORK/src"
  tar -xzf "$SDIST" -C "$WORK/src" --strip-components=3 \
    "llama_cpp_python-$VERSION/vendor/llama.cpp"
fi

# GGML_NATIVE=OFF: a portable binary (the cache may be shared by machines with other CPUs).
# No network during the build: no prebuilt web UI from Hugging Face, no curl/OpenSSL
# (models are local files; llama-server's own downloader is not used).
cmake -S "$WORK/src" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release \
  -DGGML_NATIVE=OFF -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF \
  >&2
cmake --build "$WORK/build" --target llama-server \
  --parallel "${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" >&2

mkdir -p "$PREFIX/bin"
install -m 0755 "$WORK/build/bin/llama-server" "$BINARY.tmp"
mv "$BINARY.tmp" "$BINARY"
rm -rf "$WORK"
echo "$BINARY"
