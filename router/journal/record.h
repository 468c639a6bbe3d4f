// The on-disk frame of one journal record.
//
//   u32 payload length | u32 kFrameMagic | u64 XXH3-64(payload, seed = length) | payload
//
// payload: u64 seq, i64 received_ms, u64 key.hi, u64 key.lo, u32 partition, u32 flags (1: size
// exceeded, 2: status record, 4: body compressed with zstd, 8: with a dictionary), i32 stage,
// i32 mode, i32 depth, i64 operation_created_on_ms, the header strings (u16 length + bytes each,
// in kStringFields order), [with flag 4: u32 raw body length], [with flag 8: u64 dictionary id,
// u32 its check], u32 stored body length, stored body. The checksum covers what is on disk (the
// compressed bytes). Frames without flag 4 are byte for byte those of format 1
// (docs/architecture.md, "Journal compression", "Compression dictionaries"). Little-endian (checked
// at build). Pure functions: any thread (the codec functions keep one context per thread).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "router/common/status.h"
#include "router/decode/event.h"
#include "router/journal/body_dictionary.h"
#include "router/journal/journal.h"

namespace dvrouter::journal {

inline constexpr uint32_t kFrameMagic = 0xD7E50001u;
inline constexpr size_t kFrameHeaderBytes = 16;
inline constexpr uint32_t kMaxPayloadBytes = 64u << 20;

struct FrameMeta {
  uint64_t seq = 0;
  int64_t received_ms = 0;
  EventKey key;
  uint32_t partition = 0;
  Codec codec = Codec::kNone;  // how the body is stored
  uint32_t raw_length = 0;     // the body's length once decompressed (kZstd only)
  uint64_t dict_id = 0;        // the dictionary it was compressed with (kZstd only; 0: none)
  uint32_t dict_check = 0;     // BodyDictionary::check() of that dictionary
};

// Compresses `body` into *out with zstd at `level` (or with `dict`, at the level it was made
// for) when that makes it smaller (bodies under a few hundred bytes are stored as they are).
void CompressBody(std::string_view body, int level, const BodyDictionary* dict, StoredBody* out);

// The body of a decoded frame as the webhook sent it: `stored` itself, or decompressed into
// *scratch, with `dict` when meta.dict_id names one. NotFound when `dict` is not that
// dictionary (another id, or another content than the frame's check); InvalidArgument when
// compressed bytes do not decompress to meta.raw_length.
Result<std::string_view> RawBody(const FrameMeta& meta, std::string_view stored,
                                 std::string* scratch, const BodyDictionary* dict = nullptr);

// Appends frame header + payload prefix (everything before the stored body bytes) to *out. The
// stored body (the raw body, or its compressed form per meta.codec and meta.raw_length) follows
// it on disk; the checksum covers both. Returns the total frame length.
uint32_t EncodeFramePrefix(const FrameMeta& meta, const EventHeader& header,
                           std::string_view stored, std::string* out);

// A plain frame (codec kNone) of `body` with its seq and checksum left blank, into *out (cleared;
// capacity for `slack` bytes past the frame is reserved): what the appending thread prepares
// before the writer assigns the seq. WriteFrameSeq and WriteFrameChecksum complete it.
void EncodeUnsealedFrame(const FrameMeta& meta, const EventHeader& header, std::string_view body,
                         size_t slack, std::string* out);
// Writes `seq` into such a frame: the read tail hands frames out so, their checksum left blank
// (Journal::Read); WriteFrameChecksum completes one that is kept.
void WriteFrameSeq(uint64_t seq, std::string* frame);
// Writes the checksum of a frame's bytes as they are, its seq included: what a frame stored
// beyond the journal gets (a DLQ entry, a kept processing record). The same checksum again on a
// sealed frame. A buffer shorter than the frame its header announces is left as it is.
void WriteFrameChecksum(std::string* frame);

// Parses the frame starting at data[0]; `available` bytes are readable. On success fills the
// outputs (*body: the stored body, a view into data; meta->codec says whether RawBody must
// decompress it) and *frame_len. NotFound when fewer bytes than a whole frame remain (a torn
// tail), InvalidArgument when the bytes are not a valid frame. kTrusted skips the checksum: for a
// frame this process just sealed in memory (the read tail), never for bytes read from a file.
enum class Checksum { kVerify, kTrusted };
Status DecodeFrame(const char* data, size_t available, FrameMeta* meta, EventHeader* header,
                   std::string_view* body, uint32_t* frame_len,
                   Checksum checksum = Checksum::kVerify);

}  // namespace dvrouter::journal
