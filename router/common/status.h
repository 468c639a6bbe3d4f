// Status and Result<T>: the error type of dvrouter.
//
// A Status is either OK (free to create and copy: no allocation) or carries one code from a
// closed set and a message. Library errors (Beast, simdjson, errno, yaml-cpp) are translated into
// a Status once, where they enter dvrouter; whether an error is retryable is decided from its
// code by IsRetryable(), nowhere else. Immutable values: safe to share between threads.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace dvrouter {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,     // the input is wrong and will stay wrong: do not retry
  kNotFound,            // the thing asked for does not exist
  kUnavailable,         // transient: the peer or resource may come back
  kDeadlineExceeded,    // it took too long
  kResourceExhausted,   // a budget or limit is exhausted: retry later
  kInternal,            // a bug or an invariant broken
  kPermissionDenied,    // the caller's credentials are wrong
  kFailedPrecondition,  // the thing is not in a state that allows this
};

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string_view message)
      : state_(code == StatusCode::kOk
                   ? nullptr
                   : std::make_shared<const State>(code, std::string(message))) {}

  static Status Ok() { return Status(); }

  bool ok() const { return state_ == nullptr; }
  StatusCode code() const { return state_ ? state_->code : StatusCode::kOk; }
  std::string_view message() const { return state_ ? std::string_view(state_->message) : ""; }
  std::string ToString() const;

 private:
  struct State {
    State(StatusCode c, std::string m) : code(c), message(std::move(m)) {}
    StatusCode code;
    std::string message;
  };
  std::shared_ptr<const State> state_;
};

inline Status InvalidArgument(std::string_view m) { return {StatusCode::kInvalidArgument, m}; }
inline Status NotFound(std::string_view m) { return {StatusCode::kNotFound, m}; }
inline Status Unavailable(std::string_view m) { return {StatusCode::kUnavailable, m}; }
inline Status DeadlineExceeded(std::string_view m) { return {StatusCode::kDeadlineExceeded, m}; }
inline Status ResourceExhausted(std::string_view m) { return {StatusCode::kResourceExhausted, m}; }
inline Status Internal(std::string_view m) { return {StatusCode::kInternal, m}; }
inline Status PermissionDenied(std::string_view m) { return {StatusCode::kPermissionDenied, m}; }
inline Status FailedPrecondition(std::string_view m) {
  return {StatusCode::kFailedPrecondition, m};
}

// Translates an errno value; `what` names the operation and the file.
Status ErrnoStatus(std::string_view what, int err);

std::string_view StatusCodeName(StatusCode code);

// The one place where retryable versus permanent is decided.
inline bool IsRetryable(StatusCode code) {
  return code == StatusCode::kUnavailable || code == StatusCode::kDeadlineExceeded ||
         code == StatusCode::kResourceExhausted;
}

// A value or the Status that explains its absence.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}         // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {  // NOLINT: implicit by design
    if (status_.ok()) status_ = Internal("Result constructed from an OK status without a value");
  }

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace dvrouter
