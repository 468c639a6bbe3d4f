#include "router/journal/record.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <cstring>
#include <vector>

namespace dvrouter::journal {
namespace {

EventHeader Header(int n) {
  EventHeader h;
  h.message_name = "Update";
  h.primary_entity_name = "contact";
  h.primary_entity_id = "6d81597f-0f9f-e711-8122-000d3aa2331c";
  h.operation_id = "00000000-0000-0000-0000-00000000000" + std::to_string(n % 10);
  h.stage = 40;
  h.mode = n % 2;
  h.size_exceeded = n % 3 == 0;
  return h;
}

// Frames encoded back to back into one buffer, with equal and with different payload lengths
// (the checksum seed): each must decode. This caught a stack-allocated XXH3 state used without
// XXH3_INITSTATE, whose stale seed let reset_withSeed skip building its secret.
TEST(Record, FramesEncodedBackToBackAllDecode) {
  std::vector<std::string> bodies = {std::string(200, 'x'), std::string(200, 'y'),
                                     std::string(5000, 'z'), std::string(200, 'x'), "{}"};
  std::string prefixes;
  std::vector<size_t> offsets;
  for (size_t i = 0; i < bodies.size(); ++i) {
    offsets.push_back(prefixes.size());
    FrameMeta meta{i + 1, 1'700'000'000'000 + static_cast<int64_t>(i), {i, i * 7}, 3};
    EncodeFramePrefix(meta, Header(static_cast<int>(i)), bodies[i], &prefixes);
  }
  offsets.push_back(prefixes.size());
  for (size_t i = 0; i < bodies.size(); ++i) {
    std::string frame = prefixes.substr(offsets[i], offsets[i + 1] - offsets[i]) + bodies[i];
    FrameMeta meta;
    EventHeader h;
    std::string_view body;
    uint32_t len = 0;
    Status st = DecodeFrame(frame.data(), frame.size(), &meta, &h, &body, &len);
    ASSERT_TRUE(st.ok()) << "frame " << i << ": " << st.ToString();
    EXPECT_EQ(len, frame.size());
    EXPECT_EQ(meta.seq, i + 1);
    EXPECT_EQ(meta.key.lo, i * 7);
    EXPECT_EQ(body, bodies[i]);
    EXPECT_EQ(h.operation_id, Header(static_cast<int>(i)).operation_id);
    EXPECT_EQ(h.size_exceeded, i % 3 == 0);
    EXPECT_EQ(h.mode, static_cast<int32_t>(i % 2));
  }
}

TEST(Record, DamageIsDetected) {
  std::string frame;
  const std::string body(300, 'b');
  EncodeFramePrefix(FrameMeta{9, 1, {1, 2}, 0}, Header(1), body, &frame);
  frame += body;
  FrameMeta meta;
  EventHeader h;
  std::string_view out;
  uint32_t len;
  ASSERT_TRUE(DecodeFrame(frame.data(), frame.size(), &meta, &h, &out, &len).ok());
  for (size_t at : {size_t{0}, size_t{5}, size_t{9}, size_t{20}, frame.size() - 1}) {
    std::string bad = frame;
    bad[at] ^= 0x01;
    EXPECT_FALSE(DecodeFrame(bad.data(), bad.size(), &meta, &h, &out, &len).ok()) << at;
  }
  // Fewer bytes than the frame: NotFound (a torn tail), not corruption.
  EXPECT_EQ(DecodeFrame(frame.data(), frame.size() - 1, &meta, &h, &out, &len).code(),
            StatusCode::kNotFound);
  EXPECT_EQ(DecodeFrame(frame.data(), 10, &meta, &h, &out, &len).code(), StatusCode::kNotFound);
}

// A frame made in memory (the read tail's) decodes with its checksum trusted; the same damage
// that a verified decode refuses passes a trusted one (which is why only in-memory frames are
// trusted), while its structure is still checked.
TEST(Record, ATrustedDecodeSkipsOnlyTheChecksum) {
  const std::string body(300, 'b');
  std::string frame;
  EncodeUnsealedFrame(FrameMeta{0, 1, {1, 2}, 4}, Header(2), body, 64, &frame);
  WriteFrameSeq(77, &frame);
  WriteFrameChecksum(&frame);
  FrameMeta meta;
  EventHeader h;
  std::string_view out;
  uint32_t len;
  ASSERT_TRUE(DecodeFrame(frame.data(), frame.size(), &meta, &h, &out, &len).ok());
  ASSERT_TRUE(
      DecodeFrame(frame.data(), frame.size(), &meta, &h, &out, &len, Checksum::kTrusted).ok());
  EXPECT_EQ(meta.seq, 77u);
  EXPECT_EQ(out, body);
  std::string bad = frame;
  bad[bad.size() - 1] ^= 0x01;  // a body byte
  EXPECT_FALSE(DecodeFrame(bad.data(), bad.size(), &meta, &h, &out, &len).ok());
  EXPECT_TRUE(DecodeFrame(bad.data(), bad.size(), &meta, &h, &out, &len, Checksum::kTrusted).ok());
  std::string torn = frame;
  std::memset(torn.data() + 4, 0, 4);  // the magic
  EXPECT_FALSE(
      DecodeFrame(torn.data(), torn.size(), &meta, &h, &out, &len, Checksum::kTrusted).ok());
}

// The read tail hands frames out with their seq and a blank checksum (WriteFrameSeq); a frame
// kept beyond memory gets its checksum then (WriteFrameChecksum): byte for byte the frame of
// the same record EncodeFramePrefix makes (a segment's), and writing it again changes nothing.
// A buffer that does not hold the frame its header announces is left as it is.
TEST(Record, AChecksumWrittenLaterIsTheOneSealingWrites) {
  const std::string body(300, 'b');
  std::string sealed;
  EncodeFramePrefix(FrameMeta{77, 1, {1, 2}, 4}, Header(2), body, &sealed);
  sealed.append(body);
  std::string tail;
  EncodeUnsealedFrame(FrameMeta{0, 1, {1, 2}, 4}, Header(2), body, 64, &tail);
  WriteFrameSeq(77, &tail);
  FrameMeta meta;
  EventHeader h;
  std::string_view out;
  uint32_t len;
  ASSERT_TRUE(
      DecodeFrame(tail.data(), tail.size(), &meta, &h, &out, &len, Checksum::kTrusted).ok());
  EXPECT_EQ(meta.seq, 77u);
  EXPECT_FALSE(DecodeFrame(tail.data(), tail.size(), &meta, &h, &out, &len).ok());
  WriteFrameChecksum(&tail);
  EXPECT_EQ(tail, sealed);
  ASSERT_TRUE(DecodeFrame(tail.data(), tail.size(), &meta, &h, &out, &len).ok());
  WriteFrameChecksum(&tail);
  EXPECT_EQ(tail, sealed);
  for (size_t cut : {size_t{0}, size_t{7}, size_t{16}, size_t{24}, sealed.size() - 1}) {
    std::string shorter = sealed.substr(0, cut);
    const std::string before = shorter;
    WriteFrameChecksum(&shorter);
    EXPECT_EQ(shorter, before) << cut;
  }
}

TEST(Record, ACompressedBodyRoundTripsAndItsFrameSaysSo) {
  const std::string body = "{\"attributes\":[" + std::string(4000, ' ') + "]}";
  StoredBody stored;
  CompressBody(body, 1, nullptr, &stored);
  ASSERT_EQ(stored.codec, Codec::kZstd);
  ASSERT_LT(stored.bytes.size(), body.size() / 10);
  std::string frame;
  FrameMeta in{5, 1, {3, 4}, 2, Codec::kZstd, static_cast<uint32_t>(body.size())};
  EncodeFramePrefix(in, Header(2), stored.bytes, &frame);
  frame += stored.bytes;
  FrameMeta meta;
  EventHeader h;
  std::string_view out;
  uint32_t len = 0;
  ASSERT_TRUE(DecodeFrame(frame.data(), frame.size(), &meta, &h, &out, &len).ok());
  EXPECT_EQ(meta.codec, Codec::kZstd);
  EXPECT_EQ(meta.raw_length, body.size());
  EXPECT_EQ(out, stored.bytes);
  std::string scratch;
  Result<std::string_view> raw = RawBody(meta, out, &scratch);
  ASSERT_TRUE(raw.ok()) << raw.status().ToString();
  EXPECT_EQ(*raw, body);
  // Compressed bytes that do not decompress to the recorded length are an error, not a body.
  std::string cut = stored.bytes.substr(0, stored.bytes.size() - 3);
  EXPECT_EQ(RawBody(meta, cut, &scratch).status().code(), StatusCode::kInvalidArgument);
  meta.raw_length += 1;
  EXPECT_FALSE(RawBody(meta, out, &scratch).ok());
}

TEST(Record, SmallOrIncompressibleBodiesAreStoredAsTheyAre) {
  StoredBody stored;
  CompressBody(std::string(255, 'a'), 1, nullptr, &stored);
  EXPECT_EQ(stored.codec, Codec::kNone);
  std::string random(5000, '\0');
  uint64_t x = 88172645463325252ull;
  for (char& c : random) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    c = static_cast<char>(x);
  }
  CompressBody(random, 1, nullptr, &stored);
  EXPECT_EQ(stored.codec, Codec::kNone);
  EXPECT_TRUE(stored.bytes.empty());
}

// A flag this version does not know is a format it cannot read: refused, never guessed at.
TEST(Record, AFrameWithAnUnknownFlagIsRefused) {
  std::string frame;
  const std::string body(300, 'b');
  EncodeFramePrefix(FrameMeta{9, 1, {1, 2}, 0}, Header(1), body, &frame);
  frame += body;
  // flags live after seq, received_ms, key.hi, key.lo, partition: payload offset 36.
  uint32_t flags;
  std::memcpy(&flags, frame.data() + kFrameHeaderBytes + 36, 4);
  flags |= 1u << 7;
  std::memcpy(frame.data() + kFrameHeaderBytes + 36, &flags, 4);
  // Re-seal the checksum so only the flag is wrong.
  const uint32_t payload_len = static_cast<uint32_t>(frame.size() - kFrameHeaderBytes);
  const uint64_t sum =
      XXH3_64bits_withSeed(frame.data() + kFrameHeaderBytes, payload_len, payload_len);
  std::memcpy(frame.data() + 8, &sum, 8);
  FrameMeta meta;
  EventHeader h;
  std::string_view out;
  uint32_t len;
  Status st = DecodeFrame(frame.data(), frame.size(), &meta, &h, &out, &len);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.ToString();
}

}  // namespace
}  // namespace dvrouter::journal
