#!/usr/bin/env bash
# A CUDA 12.4 compiler for tests/cuda/test_kernels_compile.py, which compiles every kernel with it as
# well as with the nvcc on PATH: the CUDA backend promises CUDA 12.x (JetPack 6 has 12.2 or 12.6) and
# 13.x. It compiles to object code only (no CUDA runtime library, no GPU). tools/install.sh runs it on
# x86-64 Debian: about 120 MB of downloads once, 100 MB on disk, nothing installed system-wide.
#
#   bash tools/install_cuda12.sh          # into $AWQ_EDGE_CUDA12, default ~/.cache/awq_edge/cuda-12.4
#
# PyPI's nvidia-cuda-nvcc-cu12 wheels (12.2, 12.4, 12.6, 12.8, 12.9 looked at) hold ptxas and libnvvm
# but neither the nvcc driver nor its front ends (cudafe++, cicc); Debian ships all of them in
# non-free's nvidia-cuda-toolkit, 12.4.1 in trixie (JetPack 6.0 has 12.2, 6.1 12.6). The pieces:
#   bin/nvcc cudafe++ ptxas fatbinary, nvvm/bin/cicc, nvvm/libdevice   Debian nvidia-cuda-toolkit 12.4.131
#   include/ (cuda_runtime.h, cuda_fp16.h ...)                         PyPI nvidia-cuda-runtime-cu12 12.4.127
#   include/crt/ (the compiler's own headers)                          PyPI nvidia-cuda-nvcc-cu12 12.4.131
#   include/nv/ (cuda_fp16.h includes <nv/target>; 12.4 has CCCL 2.3.2) Debian libcu++-dev 2.3.2
# apt-get fetches the two Debian packages from the Debian mirror in the machine's apt sources, with a
# package list and state of its own in a temporary folder: the machine's apt state is left alone.
set -euo pipefail
PYTHON=${PYTHON:-python3}
DEST=${AWQ_EDGE_CUDA12:-${XDG_CACHE_HOME:-$HOME/.cache}/awq_edge/cuda-12.4}

if [ -x "$DEST/bin/nvcc" ] && "$DEST/bin/nvcc" --version 2>/dev/null | grep -q "release 12.4"; then
  exit 0
fi
mirror=$(sed -nE 's/^URIs:[[:space:]]+([^[:space:]]+).*/\1/p
                  s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+)[[:space:]].*/\2/p' \
             /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null |
         grep -E '/debian/?$' | head -n 1 || true)
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
if [ -z "$mirror" ] || [ ! -f "$keyring" ] || ! command -v dpkg-deb >/dev/null 2>&1; then
  echo "[install_cuda12] needs apt with a Debian mirror in its sources, $keyring and dpkg-deb (Debian)" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs" "$work/wheels" "$work/root"
touch "$work/status"
echo "deb [signed-by=$keyring] $mirror trixie main non-free" > "$work/sources.list"
apt_options=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=$work/none"
             -o "Dir::State::Lists=$work/lists" -o "Dir::State::status=$work/status"
             -o "Dir::Cache=$work/cache" -o "APT::Architecture=amd64" -o "APT::Sandbox::User=root")
apt-get "${apt_options[@]}" -qq update
(cd "$work/debs" && apt-get "${apt_options[@]}" -qq download \
  "nvidia-cuda-toolkit=12.4.131~12.4.1-2" "libcu++-dev=2.3.2-2")
for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$work/root"; done

"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --platform manylinux2014_x86_64 -d "$work/wheels" \
  "nvidia-cuda-runtime-cu12==12.4.127" "nvidia-cuda-nvcc-cu12==12.4.131"
for wheel in "$work"/wheels/*.whl; do "$PYTHON" -m zipfile -e "$wheel" "$work/root"; done

rm -rf "$DEST"
mkdir -p "$DEST/bin" "$DEST/nvvm/bin" "$DEST/nvvm/libdevice" "$DEST/include"
toolkit="$work/root/usr/lib/nvidia-cuda-toolkit"
cp "$toolkit/bin/nvcc" "$work/root/usr/bin/cudafe++" "$work/root/usr/bin/ptxas" "$work/root/usr/bin/fatbinary" "$DEST/bin/"
cp "$toolkit/bin/cicc" "$DEST/nvvm/bin/"
cp "$toolkit/libdevice/libdevice.10.bc" "$DEST/nvvm/libdevice/"
cp -r "$work/root/nvidia/cuda_runtime/include/." "$work/root/nvidia/cuda_nvcc/include/." \
      "$work/root/usr/include/nv" "$DEST/include/"
rm -f "$DEST/include/__init__.py"
# nvcc reads nvcc.profile beside itself: where cicc, the other tools, libdevice and the headers are
cat > "$DEST/bin/nvcc.profile" <<'EOF'
TOP                = $(_HERE_)/..
NVVMIR_LIBRARY_DIR = $(TOP)/nvvm/libdevice
PATH              += $(TOP)/nvvm/bin:$(_HERE_):
INCLUDES          += "-I$(TOP)/include" $(_SPACE_)
EOF
"$DEST/bin/nvcc" --version | tail -n 2
echo "[install_cuda12] CUDA 12.4 compiler in $DEST"
