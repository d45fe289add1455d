#!/usr/bin/env bash
# Runs the CUDA backend's tests on the emulated GPU (emugpu.cpp): our driver, cuBLAS and kernel code paths, end to
# end, on a machine without a GPU. Needs g++ 12, python3 and NVRTC (.ci/install-nvrtc.sh); the kernels are compiled
# by the real NVRTC as on a GPU, and run by the kernel emulator.
#
#   bash bench/gpu/emu/run_cuda_tests.sh                 # the CUDA test folder (tests/ElderCuda.Tests/Cuda)
#   bash bench/gpu/emu/run_cuda_tests.sh "FILTER"        # any dotnet test filter
#   ELDR_EMU_NO_BUILD=1 ...                              # the test project is already built (Release)
#
# What it cannot show: speed, concurrency between streams, and out-of-bounds reads inside a kernel.
set -euo pipefail
cd "$(dirname "$0")/../../.."

lib=$(python3 bench/gpu/emu/build_emugpu.py)
export ELDR_CUDA="$lib" ELDR_CUBLAS="$lib" ELDR_CUBLASLT="$lib"
# the kernel-level emulator and compile tests do not go through the driver; the rest of the folder does
filter=${1:-"FullyQualifiedName~ElderCuda.Tests.Cuda&FullyQualifiedName!~KernelEmulatorTests&FullyQualifiedName!~KernelCompileTests&FullyQualifiedName!~KernelReportTests&FullyQualifiedName!~CudaKernelBenchTests"}
build=()
[ "${ELDR_EMU_NO_BUILD:-}" = 1 ] && build=(--no-build)
echo "emulated GPU: $lib"
dotnet test tests/ElderCuda.Tests -c Release "${build[@]}" --filter "$filter"
