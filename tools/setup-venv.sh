#!/usr/bin/env bash
# Create .venv (if missing) and install scalezero with pinned dependencies into it.
#
#   tools/setup-venv.sh [EXTRA]   EXTRA: "test" adds the test tools
#
# llama-cpp-python has no Linux wheels on PyPI: it is compiled here (3-10 minutes on two
# cores the first time), with CUDA when SCALEZERO_CUDA=1, or when nvcc is on PATH and
# nvidia-smi sees a GPU; SCALEZERO_CUDA=0 forces a CPU build. The built wheel is kept in
# ~/.cache/scalezero/engine/<build key>/ (SCALEZERO_WHEELHOUSE moves it) and reused only
# by a setup that would build it with the same flags. Extra CMake arguments for the
# engine: SCALEZERO_ENGINE_CMAKE_ARGS. llama.cpp's own server (llama-server, the second
# engine) is built from the same sdist's llama.cpp, linked against the wheel's libllama,
# libllama-common and ggml (so only the server's own parts compile: about 3 more minutes
# on two cores the first time), cached in <build key>-server/ beside the wheel, copied
# into .venv/bin and checked. SCALEZERO_NATIVE_ENGINE=0 switches that off; a failed
# build is recorded and setup goes on, unless SCALEZERO_NATIVE_ENGINE=1 asked for it.
# Setup ends with the engine self-check.
set -euo pipefail
cd "$(dirname "$0")/.."

extra="${1:-}"
python="${PYTHON:-python3}"
"$python" - <<'PY' || { echo "scalezero needs Python >= 3.11 (set PYTHON=...)" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $("$python" --version)"
  "$python" -m venv .venv
fi

want_cuda="${SCALEZERO_CUDA:-auto}"
if [ "$want_cuda" = auto ]; then
  want_cuda=0
  if command -v nvcc >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    want_cuda=1
  fi
fi
version=$(sed -n 's/^llama_cpp_python==//p' requirements.lock)
[ -n "$version" ] || { echo "setup: requirements.lock pins no llama_cpp_python" >&2; exit 1; }

# The engine build: AMX-free CPU flags named one by one (src/scalezero/system/engine_build.py
# says why), CUDA when wanted. Its wheel lives in a wheelhouse folder named by a hash of
# the version, the interpreter and the flags, so that a wheel built with other flags is
# never reused (pip's own cache is keyed by version only).
plan=$(.venv/bin/python src/scalezero/system/engine_build.py plan --version "$version" --cuda "$want_cuda")
field() { .venv/bin/python -c 'import json, sys; v = json.load(sys.stdin)[sys.argv[1]]; print(" ".join(v) if isinstance(v, list) else v)' "$1" <<<"$plan"; }
key=$(field key)
cmake_args=$(field cmake_args)
wheelhouse_root="${SCALEZERO_WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/scalezero/engine}"
wheelhouse="$wheelhouse_root/$key"
wheel=$(ls "$wheelhouse"/llama_cpp_python-"$version"-*.whl 2>/dev/null | head -n 1 || true)
if [ -z "$wheel" ]; then
  echo "setup: building llama-cpp-python $version (build $key: $cmake_args)"
  echo "setup: the first build takes 3-10 minutes; later setups reuse it"
  tmp_house=$(mktemp -d "${TMPDIR:-/tmp}/scalezero-engine.XXXXXX")
  trap 'rm -rf "$tmp_house"' EXIT
  started=$SECONDS
  CMAKE_ARGS="$cmake_args" .venv/bin/python -m pip wheel --disable-pip-version-check -q \
    --no-deps --no-cache-dir --no-binary llama-cpp-python -w "$tmp_house" \
    "llama-cpp-python==$version"
  echo "setup: engine built in $((SECONDS - started)) s"
  printf '%s\n' "$plan" >"$tmp_house/engine-build.json"
  mkdir -p "$(dirname "$wheelhouse")"
  rm -rf "$wheelhouse.partial" && mv "$tmp_house" "$wheelhouse.partial"
  rm -rf "$wheelhouse" && mv "$wheelhouse.partial" "$wheelhouse"
  wheel=$(ls "$wheelhouse"/llama_cpp_python-"$version"-*.whl | head -n 1)
fi

# Install that wheel unless the venv already holds this very build.
installed_key=$(.venv/bin/python -c 'import json, sys; print(json.load(open(sys.argv[1]))["key"])' \
  .venv/engine-build.json 2>/dev/null || true)
if [ "$installed_key" != "$key" ] || ! .venv/bin/python -c "import llama_cpp" 2>/dev/null; then
  echo "setup: installing the engine build $key"
  .venv/bin/python -m pip install --disable-pip-version-check -q --no-deps --force-reinstall "$wheel"
  printf '%s\n' "$plan" >.venv/engine-build.json
fi

# The native engine: llama-server from the same sdist, against the wheel just installed
# (unless SCALEZERO_NATIVE_ENGINE=0: then recorded as switched off).
.venv/bin/python src/scalezero/system/engine_build.py server --version "$version" \
  --cuda "$want_cuda" --cache "$wheelhouse_root" --venv .venv

target="."
[ -n "$extra" ] && target=".[$extra]"
echo "setup: installing scalezero$([ -n "$extra" ] && echo " with [$extra]")"
.venv/bin/python -m pip install --disable-pip-version-check -q -c requirements.lock -e "$target"

# Self-check: load the embedded model in a child process and generate a few tokens, so
# that a broken engine stops setup with its cause instead of crashing a run later.
model=resources/models/smollm2-135m.gguf
if [ ! -f "$model" ]; then
  .venv/bin/scalezero fetch-model --config config/config.yaml --name smollm2-135m --out "$model"
fi
.venv/bin/python -m scalezero.system.engine_check --model "$model"
