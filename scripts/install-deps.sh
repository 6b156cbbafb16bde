#!/usr/bin/env bash
# Installs every Debian 12 package that zsad's build, tests and benchmarks need.
# Idempotent: packages already present are skipped without touching apt.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libtorch-dev libgloo-dev                        # LibTorch 1.13 (CPU) + c10d Gloo headers
  libopenmpi-dev openmpi-bin                      # mpi backend, mpirun launcher
  libhdf5-dev                                     # checkpoints, scores, feature cache
  libyaml-cpp-dev nlohmann-json3-dev              # experiment configs, JSON records
  libgtest-dev libgmock-dev libbenchmark-dev      # tests and benchmarks
  zlib1g-dev libicu-dev                           # BPE vocabulary (.gz), Unicode classes for the tokenizer
  libopenblas0-pthread                            # fast BLAS (Debian's reference BLAS is ~25x slower)
  libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev   # image decode/encode
  python3-torch python3-numpy python3-sklearn python3-scipy python3-h5py python3-pil   # test references
  slurm-wlm munge                                 # --launcher slurm; tests/slurm/cluster_test.sh runs a 1-node cluster
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}"
