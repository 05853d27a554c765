#!/usr/bin/env bash
# Build `ollama` for this machine's CPU from its Go module (github.com/ollama/ollama) at the
# version the plugin's image pins, with nothing but the Go module proxy, Go and a C/C++
# compiler (cgo compiles the ggml CPU backend into the binary; no GPU libraries). Cached
# outside the work tree; a second run prints the cached binary's path at once.
#
#   plugins/a3s-engine-ollama/scripts/build-ollama.sh [--optional]   # prints its path
#
# Environment: OLLAMA_VERSION (default: the tag of OllamaEngine.image), A3S_ENGINE_CACHE
# (default ~/.cache/a3s-engines), GO (default: go), LLAMA_CPP_PYTHON_VERSION and PIP (for
# the headers below). Go module v0.12.6 says `go 1.24.0`, which this machine's Go builds;
# a later version may need `export GOTOOLCHAIN=go1.27.3`.
#
# A Go module zip leaves out every `vendor/` directory, so the module lacks the header-only
# libraries its llama.cpp copy includes from llama/llama.cpp/vendor (nlohmann/json,
# miniaudio, stb_image). They are taken from the llama.cpp tree in llama-cpp-python's
# source distribution on PyPI (the one build-llama-server.sh uses, shared in the cache) and
# given to cgo with CGO_CPPFLAGS.
set -euo pipefail

OPTIONAL=0
[ "${1:-}" = "--optional" ] && OPTIONAL=1

HERE=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${OLLAMA_VERSION:-}" ]; then
  OLLAMA_VERSION=$(sed -n 's/^ *image = "ollama\/ollama:\([0-9][0-9.]*\)".*/\1/p' \
    "$HERE/a3s_engine_ollama/engine.py" | head -n1)
fi
[ -n "$OLLAMA_VERSION" ] || { echo "build-ollama: cannot tell the pinned Ollama version" >&2; exit 2; }
CACHE=${A3S_ENGINE_CACHE:-$HOME/.cache/a3s-engines}
PREFIX="$CACHE/ollama-$OLLAMA_VERSION"
BINARY="$PREFIX/bin/ollama"
GO=${GO:-go}

if [ -x "$BINARY" ]; then
  echo "$BINARY"
  exit 0
fi
for tool in "$GO" cc c++; do
  if ! command -v "$tool" >/dev/null; then
    echo "build-llama-server: $tool is missing (apt-get install cmake g++ make)" >&2
    # --optional (tox): no toolchain, no build; the tests that need the binary skip, saying so
    [ "$OPTIONAL" = 1 ] && exit 0
    exit 2
  fi
done

mkdir -p "$PREFIX/bin"
exec 9>"$CACHE/.ollama-$OLLAMA_VERSION.lock"
flock 9
if [ -x "$BINARY" ]; then
  echo "$BINARY"
  exit 0
fi

SDIST_VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
SDIST="$CACHE/src/llama_cpp_python-$SDIST_VERSION.tar.gz"
HEADERS="$CACHE/src/llama-cpp-vendor-$SDIST_VERSION"
if [ ! -f "$HEADERS/nlohmann/json_fwd.hpp" ]; then
  if [ ! -s "$SDIST" ]; then
    mkdir -p "$CACHE/src"
    ${PIP:-python3 -m pip} download --quiet --no-deps --no-binary :all: \
      "llama-cpp-python==$SDIST_VERSION" -d "$CACHE/src" >&2
  fi
  rm -rf "$HEADERS.tmp" && mkdir -p "$HEADERS.tmp"
  for lib in nlohmann miniaudio stb; do
    tar -xzf "$SDIST" -C "$HEADERS.tmp" --strip-components=4 \
      "llama_cpp_python-$SDIST_VERSION/vendor/llama.cpp/vendor/$lib"
  done
  rm -rf "$HEADERS" && mv "$HEADERS.tmp" "$HEADERS"
fi

# `go install module@version` builds exactly the released module (go.sum checked against
# the checksum database), outside any work tree. -X sets what /api/version answers, as the
# release build does.
export CGO_ENABLED=1
export CGO_CPPFLAGS="${CGO_CPPFLAGS:-} -I$HEADERS"
GOBIN="$PREFIX/bin.tmp" "$GO" install -trimpath \
  -ldflags "-w -s -X=github.com/ollama/ollama/version.Version=$OLLAMA_VERSION" \
  "github.com/ollama/ollama@v$OLLAMA_VERSION" >&2
mv "$PREFIX/bin.tmp/ollama" "$BINARY"
rmdir "$PREFIX/bin.tmp"
echo "$BINARY"
