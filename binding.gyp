{
  "variables": {
    "gptq_cuda%": "<!(bash native/build-cuda.sh --gyp)"
  },
  "targets": [
    {
      "target_name": "gptq_forge",
      "sources": [
        "native/addon.cc",
        "native/bindings/forward.cc",
        "native/bindings/gptq.cc",
        "native/bindings/cpu_layer.cc",
        "native/bindings/layer.cc",
        "native/bindings/pack.cc",
        "native/kernels/cpu/gemm.cc",
        "native/kernels/cpu/llama.cc",
        "native/kernels/cpu/peak.cc",
        "native/kernels/cpu/hessian.cc",
        "native/kernels/cpu/gptq.cc",
        "native/kernels/cpu/gptaq.cc",
        "native/kernels/cpu/layer_quant.cc",
        "native/kernels/cpu/qep.cc",
        "native/kernels/cpu/linalg.cc",
        "native/kernels/cpu/pack.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": [
        "-std=c++17", "-O3", "-fexceptions", "-fno-math-errno",
        "-march=<!(node -p \"process.env.GPTQ_FORGE_MARCH || 'native'\")"
      ],
      "ldflags": ["-pthread"],
      "conditions": [
        ["gptq_cuda==1", {
          "sources": ["native/bindings/cuda.cc", "native/bindings/cuda_weights.cc", "native/bindings/cuda_eval.cc"],
          "defines": ["GPTQ_FORGE_CUDA"],
          "include_dirs": ["<!@(cat build/cuda/include-dirs.txt 2>/dev/null || true)"],
          "libraries": ["<!@(cat build/cuda/link-flags.txt 2>/dev/null || true)"]
        }]
      ]
    }
  ]
}
