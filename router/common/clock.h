// Clocks in milliseconds. Steady: intervals, deadlines, pacing (never jumps). Wall: times shown
// to people and stored with events (received_ms). Any thread.
#pragma once

#include <chrono>
#include <cstdint>

namespace dvrouter {

inline int64_t SteadyNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

inline int64_t WallNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace dvrouter
