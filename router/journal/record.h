// The on-disk frame of one journal record.
//
//   u32 payload length | u32 kFrameMagic | u64 XXH3-64(payload, seed = length) | payload
//
// payload: u64 seq, i64 received_ms, u64 key.hi, u64 key.lo, u32 partition, u32 flags (1: size
// exceeded, 2: status record),
// i32 stage, i32 mode, i32 depth, i64 operation_created_on_ms, the header strings (u16 length +
// bytes each, in kStringFields order), u32 body length, body. Little-endian (checked at build).
// Pure functions: any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "router/common/status.h"
#include "router/decode/event.h"

namespace dvrouter::journal {

inline constexpr uint32_t kFrameMagic = 0xD7E50001u;
inline constexpr size_t kFrameHeaderBytes = 16;
inline constexpr uint32_t kMaxPayloadBytes = 64u << 20;

struct FrameMeta {
  uint64_t seq = 0;
  int64_t received_ms = 0;
  EventKey key;
  uint32_t partition = 0;
};

// Appends frame header + payload prefix (everything before the body bytes) to *out. The body
// follows it on disk; the checksum covers both. Returns the total frame length.
uint32_t EncodeFramePrefix(const FrameMeta& meta, const EventHeader& header, std::string_view body,
                           std::string* out);

// Parses the frame starting at data[0]; `available` bytes are readable. On success fills the
// outputs (views into data) and *frame_len. NotFound when fewer bytes than a whole frame remain
// (a torn tail), InvalidArgument when the bytes are not a valid frame.
Status DecodeFrame(const char* data, size_t available, FrameMeta* meta, EventHeader* header,
                   std::string_view* body, uint32_t* frame_len);

}  // namespace dvrouter::journal
