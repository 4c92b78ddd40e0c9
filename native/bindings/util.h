// Helpers shared by the N-API bindings: typed-array access with checked lengths, and an
// AsyncWorker base that settles a promise. Arguments are validated in TypeScript first;
// these checks are the second line, so a wrong call is an exception, never a crash.
#pragma once
#include <napi.h>

#include <cstdint>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <vector>

namespace gfb {

template <class T>
struct ArrayTraits;
template <>
struct ArrayTraits<float> {
  static constexpr napi_typedarray_type type = napi_float32_array;
  static constexpr const char* name = "Float32Array";
};
template <>
struct ArrayTraits<uint16_t> {
  static constexpr napi_typedarray_type type = napi_uint16_array;
  static constexpr const char* name = "Uint16Array";
};
template <>
struct ArrayTraits<double> {
  static constexpr napi_typedarray_type type = napi_float64_array;
  static constexpr const char* name = "Float64Array";
};
template <>
struct ArrayTraits<uint8_t> {
  static constexpr napi_typedarray_type type = napi_uint8_array;
  static constexpr const char* name = "Uint8Array";
};
template <>
struct ArrayTraits<int32_t> {
  static constexpr napi_typedarray_type type = napi_int32_array;
  static constexpr const char* name = "Int32Array";
};

// A typed array held alive (by reference) for the duration of an async job.
template <class T>
struct Held {
  T* data = nullptr;
  size_t length = 0;
  Napi::Reference<Napi::Value> ref;
};

template <class T>
Held<T> hold(const Napi::Env& env, const Napi::Value& v, const std::string& what,
             int64_t expected_length = -1) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != ArrayTraits<T>::type)
    throw Napi::TypeError::New(env, what + ": expected a " + ArrayTraits<T>::name);
  auto arr = v.As<Napi::TypedArrayOf<T>>();
  if (expected_length >= 0 && (int64_t)arr.ElementLength() != expected_length)
    throw Napi::RangeError::New(env, what + ": expected " + std::to_string(expected_length) +
                                         " elements, got " + std::to_string(arr.ElementLength()));
  Held<T> h;
  h.data = arr.Data();
  h.length = arr.ElementLength();
  h.ref = Napi::Persistent(v);
  return h;
}

inline int64_t int_arg(const Napi::Env& env, const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw Napi::TypeError::New(env, std::string(key) + ": expected a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (d != (double)(int64_t)d || d < 0)
    throw Napi::RangeError::New(env, std::string(key) + ": expected a non-negative integer");
  return (int64_t)d;
}

inline double num_arg(const Napi::Env& env, const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw Napi::TypeError::New(env, std::string(key) + ": expected a number");
  return v.As<Napi::Number>().DoubleValue();
}

// A new typed array holding a copy of v.
template <class T>
Napi::TypedArrayOf<T> to_js(const Napi::Env& env, const std::vector<T>& v) {
  auto out = Napi::TypedArrayOf<T>::New(env, v.size());
  if (!v.empty()) std::memcpy(out.Data(), v.data(), v.size() * sizeof(T));
  return out;
}

// Base for every native job: Run() executes off the JS thread; a C++ exception (bad_alloc
// included) becomes a rejected promise with its message.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  explicit PromiseWorker(Napi::Env env)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Queue() {
    Napi::Promise p = deferred_.Promise();
    AsyncWorker::Queue();
    return p;
  }

 protected:
  virtual void Run() = 0;
  virtual Napi::Value Result(Napi::Env env) { return env.Undefined(); }

 private:
  void Execute() override {
    try {
      Run();
    } catch (const std::bad_alloc&) {
      SetError("out of memory in native job");
    } catch (const std::exception& e) {
      SetError(e.what());
    } catch (...) {
      SetError("unknown native error");
    }
  }
  void OnOK() override { deferred_.Resolve(Result(Env())); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }
  Napi::Promise::Deferred deferred_;
};

// The JS function of a worker class W: constructs W from the call (validating its arguments)
// and returns the promise of its result.
template <class W>
Napi::Value start(const Napi::CallbackInfo& info) {
  return (new W(info))->Queue();
}

}  // namespace gfb
