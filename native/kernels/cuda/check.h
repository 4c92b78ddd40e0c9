// Error checks for the CUDA kernels: every CUDA, cuBLAS and cuSOLVER call goes through one of
// these, and a failure becomes std::runtime_error (the bindings turn it into a JS exception;
// nothing here exits or aborts).
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <stdexcept>
#include <string>

namespace gfc {

inline void cuda_check(cudaError_t e, const char* what, const char* file, int line) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("CUDA error in ") + what + " (" + file + ":" +
                             std::to_string(line) + "): " + cudaGetErrorString(e));
}
inline void cublas_check(cublasStatus_t s, const char* what, const char* file, int line) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string("cuBLAS error ") + std::to_string((int)s) + " in " +
                             what + " (" + file + ":" + std::to_string(line) + ")");
}
inline void cusolver_check(cusolverStatus_t s, const char* what, const char* file, int line) {
  if (s != CUSOLVER_STATUS_SUCCESS)
    throw std::runtime_error(std::string("cuSOLVER error ") + std::to_string((int)s) + " in " +
                             what + " (" + file + ":" + std::to_string(line) + ")");
}

}  // namespace gfc

#define CUDA_CHECK(x) ::gfc::cuda_check((x), #x, __FILE__, __LINE__)
#define CUBLAS_CHECK(x) ::gfc::cublas_check((x), #x, __FILE__, __LINE__)
#define CUSOLVER_CHECK(x) ::gfc::cusolver_check((x), #x, __FILE__, __LINE__)
// After a kernel launch: the launch error (bad configuration), not the asynchronous result.
#define CUDA_LAUNCH_CHECK() ::gfc::cuda_check(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)
