// Helpers shared by the N-API bindings: readers of every argument (count, type, range; a
// TypeError or RangeError "name: expected X, got Y"), typed-array access with checked lengths,
// and an AsyncWorker base that settles a promise. Arguments are validated in TypeScript first;
// these checks are the second line, so a wrong call is an exception, never a crash. No binding
// reads info[i] but through these readers.
#pragma once
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <initializer_list>
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

// ---- What a value is, for "name: expected X, got Y" ------------------------------------------

inline const char* typed_array_name(napi_typedarray_type t) {
  switch (t) {
    case napi_int8_array: return "Int8Array";
    case napi_uint8_array: return "Uint8Array";
    case napi_uint8_clamped_array: return "Uint8ClampedArray";
    case napi_int16_array: return "Int16Array";
    case napi_uint16_array: return "Uint16Array";
    case napi_int32_array: return "Int32Array";
    case napi_uint32_array: return "Uint32Array";
    case napi_float32_array: return "Float32Array";
    case napi_float64_array: return "Float64Array";
    case napi_bigint64_array: return "BigInt64Array";
    case napi_biguint64_array: return "BigUint64Array";
    default: return "typed array";
  }
}

// "a Float32Array", "an Int32Array", "a Uint16Array".
inline std::string with_article(const std::string& noun) {
  const bool vowel = !noun.empty() && std::strchr("AEIOaeio", noun[0]) != nullptr;
  return (vowel ? "an " : "a ") + noun;
}

inline std::string number_text(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  char buf[40];
  if (d == std::floor(d) && std::fabs(d) < 1e21) std::snprintf(buf, sizeof buf, "%.0f", d);
  else std::snprintf(buf, sizeof buf, "%.17g", d);
  return buf;
}

// A short description of any JS value: `undefined`, `-1`, `'F64'`, `a Float64Array of 6 elements`.
inline std::string describe(const Napi::Value& v) {
  switch (v.Type()) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return v.As<Napi::Boolean>().Value() ? "true" : "false";
    case napi_number: return number_text(v.As<Napi::Number>().DoubleValue());
    case napi_string: {
      std::string s = v.As<Napi::String>().Utf8Value();
      if (s.size() > 40) s = s.substr(0, 40) + "…";
      return "'" + s + "'";
    }
    case napi_symbol: return "a symbol";
    case napi_bigint: return "a bigint";
    case napi_function: return "a function";
    case napi_external: return "an external handle";
    default: break;
  }
  if (v.IsTypedArray()) {
    auto t = v.As<Napi::TypedArray>();
    return with_article(typed_array_name(t.TypedArrayType())) + " of " + std::to_string(t.ElementLength()) +
           " elements";
  }
  if (v.IsArray()) return "an array of " + std::to_string(v.As<Napi::Array>().Length()) + " elements";
  if (v.IsArrayBuffer()) return "an ArrayBuffer";
  return "an object";
}

[[noreturn]] inline void type_error(const Napi::Env& env, const std::string& name, const std::string& expected,
                                    const Napi::Value& got) {
  throw Napi::TypeError::New(env, name + ": expected " + expected + ", got " + describe(got));
}
[[noreturn]] inline void range_error(const Napi::Env& env, const std::string& name, const std::string& expected,
                                     const std::string& got) {
  throw Napi::RangeError::New(env, name + ": expected " + expected + ", got " + got);
}

// ---- Element counts ----------------------------------------------------------------------------

// The largest integer a JS number holds exactly (2^53 - 1): every count and size is below it.
constexpr int64_t kMaxSafeInt = 9007199254740991LL;

// QEP's or GPTAQ's α: a number in [0, 1] (the TS rules take (0, 1]; 0 is the tests' plain-GPTQ
// case), else a RangeError naming `what`. config.qep / config.gptaq and qepCorrect read it so.
inline float alpha_value(const Napi::Env& env, double alpha, const std::string& what) {
  if (!(alpha >= 0 && alpha <= 1)) range_error(env, what, "a number in [0, 1]", number_text(alpha));
  return (float)alpha;
}

// The product of sizes (an element count), or a RangeError naming `what` when a factor is
// negative or the product does not fit below 2^53.
inline int64_t elements(const Napi::Env& env, const std::string& what, std::initializer_list<int64_t> sizes) {
  int64_t n = 1;
  std::string text;
  for (int64_t s : sizes) text += (text.empty() ? "" : " × ") + std::to_string(s);
  for (int64_t s : sizes) {
    if (s < 0) range_error(env, what, "non-negative sizes", text);
    if (__builtin_mul_overflow(n, s, &n) || n > kMaxSafeInt) range_error(env, what, "a size below 2^53", text);
  }
  return n;
}

// The typed array v held for the job: any length, or exactly `expected_length` elements (a
// negative expected length — sizes that disagree — is a RangeError, never a skipped check).
template <class T>
Held<T> hold(const Napi::Env& env, const Napi::Value& v, const std::string& what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != ArrayTraits<T>::type)
    type_error(env, what, with_article(ArrayTraits<T>::name), v);
  auto arr = v.As<Napi::TypedArrayOf<T>>();
  Held<T> h;
  h.data = arr.Data();
  h.length = arr.ElementLength();
  h.ref = Napi::Persistent(v);
  return h;
}
template <class T>
Held<T> hold(const Napi::Env& env, const Napi::Value& v, const std::string& what, int64_t expected_length) {
  if (expected_length < 0)
    range_error(env, what, "sizes that give a non-negative length", std::to_string(expected_length));
  Held<T> h = hold<T>(env, v, what);
  if ((int64_t)h.length != expected_length)
    range_error(env, what, std::to_string(expected_length) + " elements", std::to_string(h.length));
  return h;
}

// ---- Positional arguments: index and name; TypeError for a wrong type, RangeError for a
// value out of range, both "name: expected X, got Y" -------------------------------------------

// The call has between min and max arguments (a TypeError naming the function otherwise).
inline void arg_count(const Napi::CallbackInfo& info, const char* fn, size_t min, size_t max) {
  const size_t n = info.Length();
  if (n >= min && n <= max) return;
  const std::string want = min == max ? std::to_string(min) : std::to_string(min) + " to " + std::to_string(max);
  throw Napi::TypeError::New(info.Env(), std::string(fn) + ": expected " + want + " arguments, got " + std::to_string(n));
}
inline void arg_count(const Napi::CallbackInfo& info, const char* fn, size_t n) { arg_count(info, fn, n, n); }

inline double number_value(const Napi::Env& env, const Napi::Value& v, const std::string& name) {
  if (!v.IsNumber()) type_error(env, name, "a number", v);
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) range_error(env, name, "a finite number", number_text(d));
  return d;
}
inline int64_t int_value(const Napi::Env& env, const Napi::Value& v, const std::string& name, int64_t min = 0,
                         int64_t max = kMaxSafeInt) {
  if (!v.IsNumber()) type_error(env, name, "an integer", v);
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= (double)min && d <= (double)max && d == std::floor(d))) {
    const std::string range = max == kMaxSafeInt ? "an integer ≥ " + std::to_string(min)
                                                 : "an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "]";
    range_error(env, name, range, number_text(d));
  }
  return (int64_t)d;
}
inline bool bool_value(const Napi::Env& env, const Napi::Value& v, const std::string& name) {
  if (!v.IsBoolean()) type_error(env, name, "a boolean", v);
  return v.As<Napi::Boolean>().Value();
}
inline std::string string_value(const Napi::Env& env, const Napi::Value& v, const std::string& name) {
  if (!v.IsString()) type_error(env, name, "a string", v);
  return v.As<Napi::String>().Utf8Value();
}
// The position of a string among `names` (an enum passed by name); a RangeError listing the
// valid names otherwise.
inline int choice_value(const Napi::Env& env, const Napi::Value& v, const std::string& name,
                        const std::vector<std::string>& names) {
  std::string list;
  for (size_t i = 0; i < names.size(); ++i) list += (i ? (i + 1 == names.size() ? " or " : ", ") : "") + names[i];
  if (!v.IsString()) type_error(env, name, list, v);
  const std::string s = v.As<Napi::String>().Utf8Value();
  for (size_t i = 0; i < names.size(); ++i)
    if (names[i] == s) return (int)i;
  range_error(env, name, list, describe(v));
}
inline Napi::Object object_value(const Napi::Env& env, const Napi::Value& v, const std::string& name) {
  if (!v.IsObject() || v.IsArray() || v.IsTypedArray() || v.IsFunction()) type_error(env, name, "an object", v);
  return v.As<Napi::Object>();
}
inline Napi::Array array_value(const Napi::Env& env, const Napi::Value& v, const std::string& name) {
  if (!v.IsArray()) type_error(env, name, "an array", v);
  return v.As<Napi::Array>();
}
// Each element of an array of typed arrays, held: any length, or each of `per` elements.
template <class T>
std::vector<Held<T>> typed_arrays_value(const Napi::Env& env, const Napi::Value& v, const std::string& name) {
  Napi::Array a = array_value(env, v, name);
  std::vector<Held<T>> out;
  out.reserve(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) out.push_back(hold<T>(env, a.Get(i), name + "[" + std::to_string(i) + "]"));
  return out;
}
template <class T>
std::vector<Held<T>> typed_arrays_value(const Napi::Env& env, const Napi::Value& v, const std::string& name,
                                        int64_t per) {
  Napi::Array a = array_value(env, v, name);
  std::vector<Held<T>> out;
  out.reserve(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i)
    out.push_back(hold<T>(env, a.Get(i), name + "[" + std::to_string(i) + "]", per));
  return out;
}

inline double number_at(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return number_value(info.Env(), info[i], name);
}
inline int64_t int_at(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t min = 0,
                      int64_t max = kMaxSafeInt) {
  return int_value(info.Env(), info[i], name, min, max);
}
inline bool bool_at(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return bool_value(info.Env(), info[i], name);
}
inline std::string string_at(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return string_value(info.Env(), info[i], name);
}
inline int choice_at(const Napi::CallbackInfo& info, size_t i, const char* name, const std::vector<std::string>& names) {
  return choice_value(info.Env(), info[i], name, names);
}
inline Napi::Object object_at(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return object_value(info.Env(), info[i], name);
}
template <class T>
Held<T> typed_at(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return hold<T>(info.Env(), info[i], name);
}
template <class T>
Held<T> typed_at(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t expected_length) {
  return hold<T>(info.Env(), info[i], name, expected_length);
}
template <class T>
std::vector<Held<T>> typed_arrays_at(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return typed_arrays_value<T>(info.Env(), info[i], name);
}
template <class T>
std::vector<Held<T>> typed_arrays_at(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t per) {
  return typed_arrays_value<T>(info.Env(), info[i], name, per);
}

// ---- Properties of an options object: the key is the name (prefixed by `owner.` if given) ----

inline std::string prop_name(const char* owner, const char* key) {
  return owner ? std::string(owner) + "." + key : std::string(key);
}
inline int64_t int_arg(const Napi::Env& env, const Napi::Object& o, const char* key, const char* owner = nullptr,
                       int64_t min = 0, int64_t max = kMaxSafeInt) {
  return int_value(env, o.Get(key), prop_name(owner, key), min, max);
}
inline double num_arg(const Napi::Env& env, const Napi::Object& o, const char* key, const char* owner = nullptr) {
  return number_value(env, o.Get(key), prop_name(owner, key));
}
// A boolean property; undefined reads as `absent`.
inline bool bool_arg(const Napi::Env& env, const Napi::Object& o, const char* key, bool absent,
                     const char* owner = nullptr) {
  Napi::Value v = o.Get(key);
  return v.IsUndefined() ? absent : bool_value(env, v, prop_name(owner, key));
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
// and returns the promise of its result. Any C++ exception while reading the arguments (a
// bad_alloc included) becomes a JS exception: node-addon-api rethrows only Napi::Error, and
// anything else escaping a callback would abort the process.
template <class W>
Napi::Value start(const Napi::CallbackInfo& info) {
  W* w = nullptr;
  try {
    w = new W(info);
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw Napi::RangeError::New(info.Env(), "out of memory preparing the native job");
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), e.what());
  }
  return w->Queue();
}

// A synchronous binding, with the same exception rule as start().
template <Napi::Value (*F)(const Napi::CallbackInfo&)>
Napi::Value sync(const Napi::CallbackInfo& info) {
  try {
    return F(info);
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), e.what());
  }
}

}  // namespace gfb
