#!/bin/sh
# CMAKE_ARGS for building llama-cpp-python on this CPU. On most CPUs: none (llama.cpp
# builds for the CPU it runs on, -march=native). On a CPU that reports AMX, llama.cpp's
# AMX kernels can fault: a Firecracker VM on a Xeon reports amx_tile but its
# `ldtilecfg` raises a general-protection fault in libggml-cpu, so every model crashed
# on its first decode (2026-12-02). There the build names the CPU's other features one
# by one and leaves AMX out.
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null)
case " $flags " in
  *" amx_tile "*) ;;
  *) exit 0 ;;
esac
args="-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
for pair in sse4_2:SSE42 f16c:F16C fma:FMA bmi2:BMI2 avx:AVX avx2:AVX2 avx_vnni:AVX_VNNI \
            avx512f:AVX512 avx512vbmi:AVX512_VBMI avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16; do
  flag=${pair%%:*}
  name=${pair#*:}
  case " $flags " in
    *" $flag "*) args="$args -DGGML_$name=ON" ;;
    *) args="$args -DGGML_$name=OFF" ;;
  esac
done
echo "$args"
