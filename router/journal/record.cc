#include "router/journal/record.h"

#define XXH_STATIC_LINKING_ONLY  // XXH3 state on the stack
#include <xxhash.h>
#define ZSTD_STATIC_LINKING_ONLY  // ZSTD_c_forceAttachDict
#include <zstd.h>

#include <bit>
#include <cstring>

namespace dvrouter::journal {

static_assert(std::endian::native == std::endian::little, "journal frames are little-endian");

namespace {

constexpr uint32_t kFlagSizeExceeded = 1;
constexpr uint32_t kFlagStatusRecord = 2;
constexpr uint32_t kFlagZstd = 4;
constexpr uint32_t kFlagDictionary = 8;
constexpr uint32_t kKnownFlags =
    kFlagSizeExceeded | kFlagStatusRecord | kFlagZstd | kFlagDictionary;
// Below this, zstd's frame header eats most of what it could save.
constexpr size_t kMinCompressBytes = 256;

// One compression and one decompression context per thread (ingress threads compress, readers
// decompress), freed when the thread ends.
struct Contexts {
  ZSTD_CCtx* c = nullptr;
  ZSTD_DCtx* d = nullptr;
  ~Contexts() {
    ZSTD_freeCCtx(c);
    ZSTD_freeDCtx(d);
  }
};
thread_local Contexts contexts;

std::string EventHeader::*const kStringFields[] = {
    &EventHeader::message_name,        &EventHeader::primary_entity_name,
    &EventHeader::primary_entity_id,   &EventHeader::correlation_id,
    &EventHeader::operation_id,        &EventHeader::request_id,
    &EventHeader::owning_extension_id, &EventHeader::initiating_user_id,
    &EventHeader::organization_name,   &EventHeader::organization_host,
    &EventHeader::header_entity_name,  &EventHeader::header_request_name,
    &EventHeader::http_request_id,     &EventHeader::correlation_request_id,
};

template <typename T>
void Put(std::string* out, T v) {
  char buf[sizeof(T)];
  std::memcpy(buf, &v, sizeof(T));
  out->append(buf, sizeof(T));
}

struct Reader {
  const char* p;
  const char* end;
  template <typename T>
  bool Get(T* v) {
    if (static_cast<size_t>(end - p) < sizeof(T)) return false;
    std::memcpy(v, p, sizeof(T));
    p += sizeof(T);
    return true;
  }
  bool GetString(std::string* s) {
    uint16_t n = 0;
    if (!Get(&n) || static_cast<size_t>(end - p) < n) return false;
    s->assign(p, n);
    p += n;
    return true;
  }
};

}  // namespace

void CompressBody(std::string_view body, int level, const BodyDictionary* dict, StoredBody* out) {
  out->codec = Codec::kNone;
  out->dict_id = 0;
  out->dict_check = 0;
  out->bytes.clear();
  if (body.size() < kMinCompressBytes) return;
  if (contexts.c == nullptr) contexts.c = ZSTD_createCCtx();
  if (contexts.c == nullptr) return;  // out of memory: store it as it is
  out->bytes.resize(ZSTD_compressBound(body.size()));
  size_t n;
  if (dict != nullptr) {
    // Attached, the dictionary's tables are read where they are; zstd would otherwise copy them
    // into the context for bodies over 8 KB, which costs more than the dictionary saves.
    ZSTD_CCtx_reset(contexts.c, ZSTD_reset_session_and_parameters);
    ZSTD_CCtx_refCDict(contexts.c, dict->cdict());
    ZSTD_CCtx_setParameter(contexts.c, ZSTD_c_forceAttachDict, ZSTD_dictForceAttach);
    // The frame names the dictionary (its id and check); zstd's own dictionary ID would repeat it.
    ZSTD_CCtx_setParameter(contexts.c, ZSTD_c_dictIDFlag, 0);
    n = ZSTD_compress2(contexts.c, out->bytes.data(), out->bytes.size(), body.data(), body.size());
    ZSTD_CCtx_refCDict(contexts.c, nullptr);  // the context keeps no pointer to a dictionary
  } else {
    n = ZSTD_compressCCtx(contexts.c, out->bytes.data(), out->bytes.size(), body.data(),
                          body.size(), level);
  }
  if (ZSTD_isError(n) || n >= body.size()) {
    out->bytes.clear();
    return;
  }
  out->bytes.resize(n);
  out->codec = Codec::kZstd;
  out->dict_id = dict != nullptr ? dict->id() : 0;
  out->dict_check = dict != nullptr ? dict->check() : 0;
}

Result<std::string_view> RawBody(const FrameMeta& meta, std::string_view stored,
                                 std::string* scratch, const BodyDictionary* dict) {
  if (meta.codec == Codec::kNone) return stored;
  if (meta.dict_id != 0 && (dict == nullptr || dict->id() != meta.dict_id)) {
    return NotFound("body compressed with dictionary " + std::to_string(meta.dict_id) +
                    ", which the journal does not hold");
  }
  if (meta.dict_id != 0 && dict->check() != meta.dict_check) {
    return NotFound("body compressed with another dictionary " + std::to_string(meta.dict_id) +
                    " than the journal holds (its content differs)");
  }
  if (contexts.d == nullptr) contexts.d = ZSTD_createDCtx();
  if (contexts.d == nullptr) return ResourceExhausted("no memory for a zstd context");
  scratch->resize(meta.raw_length);
  const size_t n = meta.dict_id != 0
                       ? ZSTD_decompress_usingDDict(contexts.d, scratch->data(), scratch->size(),
                                                    stored.data(), stored.size(), dict->ddict())
                       : ZSTD_decompressDCtx(contexts.d, scratch->data(), scratch->size(),
                                             stored.data(), stored.size());
  if (ZSTD_isError(n) || n != meta.raw_length) {
    return InvalidArgument(std::string("compressed body does not decompress: ") +
                           (ZSTD_isError(n) ? ZSTD_getErrorName(n) : "length differs"));
  }
  return std::string_view(*scratch);
}

namespace {

// Frame header (blank) + payload prefix, everything before the stored body; returns the payload
// length (prefix and body).
uint32_t AppendPrefix(const FrameMeta& meta, const EventHeader& h, std::string_view body,
                      std::string* out) {
  const size_t start = out->size();
  out->append(kFrameHeaderBytes, '\0');
  Put<uint64_t>(out, meta.seq);
  Put<int64_t>(out, meta.received_ms);
  Put<uint64_t>(out, meta.key.hi);
  Put<uint64_t>(out, meta.key.lo);
  Put<uint32_t>(out, meta.partition);
  const bool zstd = meta.codec == Codec::kZstd;
  const bool dict = zstd && meta.dict_id != 0;
  Put<uint32_t>(out, (h.size_exceeded ? kFlagSizeExceeded : 0) |
                         (h.status_record ? kFlagStatusRecord : 0) | (zstd ? kFlagZstd : 0) |
                         (dict ? kFlagDictionary : 0));
  Put<int32_t>(out, h.stage);
  Put<int32_t>(out, h.mode);
  Put<int32_t>(out, h.depth);
  Put<int64_t>(out, h.operation_created_on_ms);
  for (auto field : kStringFields) {
    const std::string& s = h.*field;
    // The decoder caps body names at 1024 bytes and the server caps all HTTP headers at 16 KiB,
    // so nothing is clipped in practice; clipping keeps a frame well formed regardless.
    const uint16_t n = static_cast<uint16_t>(s.size() > 0xffff ? 0xffff : s.size());
    Put<uint16_t>(out, n);
    out->append(s.data(), n);
  }
  if (zstd) Put<uint32_t>(out, meta.raw_length);
  if (dict) {
    Put<uint64_t>(out, meta.dict_id);
    Put<uint32_t>(out, meta.dict_check);
  }
  Put<uint32_t>(out, static_cast<uint32_t>(body.size()));
  return static_cast<uint32_t>(out->size() - start - kFrameHeaderBytes + body.size());
}

void WriteFrameHeader(uint32_t payload_len, uint64_t checksum, char* hdr) {
  std::memcpy(hdr, &payload_len, 4);
  std::memcpy(hdr + 4, &kFrameMagic, 4);
  std::memcpy(hdr + 8, &checksum, 8);
}

}  // namespace

uint32_t EncodeFramePrefix(const FrameMeta& meta, const EventHeader& h, std::string_view body,
                           std::string* out) {
  const size_t start = out->size();
  const uint32_t payload_len = AppendPrefix(meta, h, body, out);
  const size_t prefix_payload = payload_len - body.size();

  XXH3_state_t state;
  XXH3_INITSTATE(&state);  // a stack state must be initialized: reset_withSeed reads its old seed
  XXH3_64bits_reset_withSeed(&state, payload_len);
  XXH3_64bits_update(&state, out->data() + start + kFrameHeaderBytes, prefix_payload);
  XXH3_64bits_update(&state, body.data(), body.size());
  const uint64_t checksum = XXH3_64bits_digest(&state);
  WriteFrameHeader(payload_len, checksum, out->data() + start);
  return static_cast<uint32_t>(kFrameHeaderBytes + payload_len);
}

void EncodeUnsealedFrame(const FrameMeta& meta, const EventHeader& h, std::string_view body,
                         size_t slack, std::string* out) {
  out->clear();
  size_t strings = 0;
  for (auto field : kStringFields) strings += 2 + (h.*field).size();
  const size_t need = kFrameHeaderBytes + 96 + strings + body.size() + slack;
  if (out->capacity() < need) {
    // Exactly what it takes: reserve on the buffer itself would double it (buffers go round).
    std::string exact;
    exact.reserve(need);
    out->swap(exact);
  }
  FrameMeta plain = meta;
  plain.seq = 0;
  plain.codec = Codec::kNone;
  plain.raw_length = 0;
  const uint32_t payload_len = AppendPrefix(plain, h, body, out);
  out->append(body);
  WriteFrameHeader(payload_len, 0, out->data());
}

void WriteFrameSeq(uint64_t seq, std::string* frame) {
  std::memcpy(frame->data() + kFrameHeaderBytes, &seq, 8);  // the payload's first field
}

void WriteFrameChecksum(std::string* frame) {
  uint32_t payload_len = 0;
  if (frame->size() < kFrameHeaderBytes) return;
  std::memcpy(&payload_len, frame->data(), 4);
  if (payload_len < 8 || frame->size() - kFrameHeaderBytes < payload_len) return;
  const uint64_t checksum =
      XXH3_64bits_withSeed(frame->data() + kFrameHeaderBytes, payload_len, payload_len);
  std::memcpy(frame->data() + 8, &checksum, 8);
}

Status DecodeFrame(const char* data, size_t available, FrameMeta* meta, EventHeader* h,
                   std::string_view* body, uint32_t* frame_len, Checksum check) {
  if (available < kFrameHeaderBytes) return NotFound("short frame header");
  uint32_t payload_len, magic;
  uint64_t checksum;
  std::memcpy(&payload_len, data, 4);
  std::memcpy(&magic, data + 4, 4);
  std::memcpy(&checksum, data + 8, 8);
  if (magic != kFrameMagic) return InvalidArgument("bad frame magic");
  if (payload_len > kMaxPayloadBytes) return InvalidArgument("frame length out of range");
  if (available - kFrameHeaderBytes < payload_len) return NotFound("short frame payload");
  const char* payload = data + kFrameHeaderBytes;
  if (check == Checksum::kVerify &&
      XXH3_64bits_withSeed(payload, payload_len, payload_len) != checksum) {
    return InvalidArgument("frame checksum mismatch");
  }
  Reader r{payload, payload + payload_len};
  uint32_t flags = 0, body_len = 0;
  bool ok = r.Get(&meta->seq) && r.Get(&meta->received_ms) && r.Get(&meta->key.hi) &&
            r.Get(&meta->key.lo) && r.Get(&meta->partition) && r.Get(&flags) && r.Get(&h->stage) &&
            r.Get(&h->mode) && r.Get(&h->depth) && r.Get(&h->operation_created_on_ms);
  for (auto field : kStringFields) ok = ok && r.GetString(&(h->*field));
  meta->codec = (flags & kFlagZstd) != 0 ? Codec::kZstd : Codec::kNone;
  meta->raw_length = 0;
  meta->dict_id = 0;
  meta->dict_check = 0;
  if (meta->codec == Codec::kZstd) ok = ok && r.Get(&meta->raw_length);
  if ((flags & kFlagDictionary) != 0) {
    ok = ok && meta->codec == Codec::kZstd && r.Get(&meta->dict_id) && meta->dict_id != 0 &&
         r.Get(&meta->dict_check);
  }
  ok = ok && r.Get(&body_len) && static_cast<size_t>(r.end - r.p) == body_len;
  // A flag this version does not know means a format it cannot read (never guess).
  if (!ok || (flags & ~kKnownFlags) != 0 || meta->raw_length > kMaxPayloadBytes) {
    return InvalidArgument("frame payload malformed");
  }
  h->size_exceeded = (flags & kFlagSizeExceeded) != 0;
  h->status_record = (flags & kFlagStatusRecord) != 0;
  h->target_offset = h->target_length = 0;  // not in frames (EventHeader)
  *body = std::string_view(r.p, body_len);
  *frame_len = static_cast<uint32_t>(kFrameHeaderBytes + payload_len);
  return Status::Ok();
}

}  // namespace dvrouter::journal
