#!/usr/bin/env bash
# Create .venv (if missing) and install scalezero with pinned dependencies into it.
#
#   tools/setup-venv.sh [EXTRA]   EXTRA: "test" adds the test tools
#
# llama-cpp-python has no Linux wheels on PyPI: pip compiles it (about ten minutes on
# two cores the first time; pip's wheel cache makes later installs quick). It is built
# with CUDA when SCALEZERO_CUDA=1, or when nvcc is on PATH and nvidia-smi sees a GPU;
# SCALEZERO_CUDA=0 forces a CPU build.
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
# LLAVA (multimodal) is not used and adds minutes to the build.
cmake_args="-DLLAVA_BUILD=off"
if [ "$want_cuda" = 1 ]; then
  cmake_args="$cmake_args -DGGML_CUDA=on"
  echo "setup: building llama-cpp-python with CUDA"
fi

# A CPU build already in the venv would satisfy pip: rebuild it when CUDA is wanted.
if [ "$want_cuda" = 1 ] && .venv/bin/python -c "import llama_cpp" 2>/dev/null \
   && ! .venv/bin/python -c "import llama_cpp, sys; sys.exit(0 if llama_cpp.llama_supports_gpu_offload() else 1)"; then
  echo "setup: replacing the CPU build of llama-cpp-python"
  .venv/bin/python -m pip uninstall -y -q llama-cpp-python
  export PIP_NO_CACHE_DIR=1  # the cached wheel is the CPU build
fi

target="."
[ -n "$extra" ] && target=".[$extra]"
echo "setup: installing scalezero$([ -n "$extra" ] && echo " with [$extra]") (the first llama-cpp-python build takes ~10 minutes)"
CMAKE_ARGS="$cmake_args" .venv/bin/python -m pip install --disable-pip-version-check -q \
  -c requirements.lock -e "$target"
