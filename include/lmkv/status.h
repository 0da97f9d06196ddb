// Status and Result<T>: how every fallible lmkv call reports errors. Errors are values that carry a
// code and a message naming the offending input; no exception crosses a module boundary.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace lmkv {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,     // the caller passed something malformed (shape, dtype, null, range)
  kNotFound,            // an unknown block, sequence or file
  kAlreadyExists,       // a block written twice (blocks are immutable)
  kCorruption,          // stored data failed its checksum or is truncated
  kIOError,             // the disk tier (RocksDB) failed
  kResourceExhausted,   // a tier is too small or fully pinned
  kFailedPrecondition,  // the call does not fit the object's state (closed store, no GPU)
  kCudaError,           // a CUDA runtime call failed
  kInternal,            // a broken invariant inside lmkv
};

const char* status_code_name(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string m) {
    return {StatusCode::kInvalidArgument, std::move(m)};
  }
  static Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
  static Status AlreadyExists(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }
  static Status Corruption(std::string m) { return {StatusCode::kCorruption, std::move(m)}; }
  static Status IOError(std::string m) { return {StatusCode::kIOError, std::move(m)}; }
  static Status ResourceExhausted(std::string m) {
    return {StatusCode::kResourceExhausted, std::move(m)};
  }
  static Status FailedPrecondition(std::string m) {
    return {StatusCode::kFailedPrecondition, std::move(m)};
  }
  static Status CudaError(std::string m) { return {StatusCode::kCudaError, std::move(m)}; }
  static Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "Corruption: block (seq 1, layer 0, ...) failed its checksum"
  std::string to_string() const;

  // Prefixes the message with context, keeping the code: "page_in: " + message.
  Status with_context(const std::string& context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// A value or the Status that explains why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::move(value)) {}        // NOLINT(google-explicit-constructor)
  Result(Status status) : state_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    if (std::get<Status>(state_).ok()) {
      state_ = Status::Internal("Result constructed from an OK status without a value");
    }
  }

  bool ok() const { return std::holds_alternative<T>(state_); }
  Status status() const { return ok() ? Status::Ok() : std::get<Status>(state_); }
  T& value() & { return std::get<T>(state_); }
  const T& value() const& { return std::get<T>(state_); }
  T&& value() && { return std::get<T>(std::move(state_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }

 private:
  std::variant<T, Status> state_;
};

}  // namespace lmkv

#define LMKV_CONCAT_INNER(a, b) a##b
#define LMKV_CONCAT(a, b) LMKV_CONCAT_INNER(a, b)

#define LMKV_RETURN_IF_ERROR(expr)               \
  do {                                           \
    ::lmkv::Status lmkv_status_ = (expr);        \
    if (!lmkv_status_.ok()) return lmkv_status_; \
  } while (0)

#define LMKV_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(tmp).value()

#define LMKV_ASSIGN_OR_RETURN(lhs, expr) \
  LMKV_ASSIGN_OR_RETURN_IMPL(LMKV_CONCAT(lmkv_result_, __LINE__), lhs, expr)
