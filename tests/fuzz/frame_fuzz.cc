// Journal frames and segments on any bytes: the frame decoder walks a segment as recovery does
// (a frame it accepts re-encodes to the same record), and a segment of these bytes in a journal
// directory is recovered the same way twice.
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>

#include "router/journal/file_journal.h"
#include "router/journal/record.h"
#include "tests/fuzz/fuzz_util.h"

using dvrouter::fuzz::Check;
namespace journal = dvrouter::journal;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const char* bytes = reinterpret_cast<const char*>(data);
  // Frame by frame, as a scan does.
  for (size_t at = 0; at < size;) {
    journal::FrameMeta meta;
    dvrouter::EventHeader header;
    std::string_view stored;
    uint32_t frame_len = 0;
    if (!journal::DecodeFrame(bytes + at, size - at, &meta, &header, &stored, &frame_len).ok()) {
      break;
    }
    Check(frame_len > 0 && frame_len <= size - at, "frame length outside the input");
    std::string scratch;
    auto body = journal::RawBody(meta, stored, &scratch);
    // Re-encoded, the frame decodes to the same record.
    std::string again;
    journal::EncodeFramePrefix(meta, header, stored, &again);
    again.append(stored);
    journal::FrameMeta meta2;
    dvrouter::EventHeader header2;
    std::string_view stored2;
    uint32_t len2 = 0;
    Check(journal::DecodeFrame(again.data(), again.size(), &meta2, &header2, &stored2, &len2).ok(),
          "a re-encoded frame does not decode");
    Check(meta2.seq == meta.seq && meta2.key == meta.key && stored2 == stored &&
              header2.primary_entity_id == header.primary_entity_id,
          "a re-encoded frame decodes differently");
    (void)body;
    at += frame_len;
  }
  // The bytes as the only segment of a journal: recovery and a scan.
  const std::string dir = dvrouter::fuzz::ScratchDir("journal");
  std::ofstream(dir + "/META") << "format=2\npartitions=4\n";
  std::ofstream(dir + "/00000000000000000001.seg", std::ios::binary).write(bytes, size);
  (void)dvrouter::FileJournal::ScanDirectory(dir, [](const dvrouter::RecordView&) { return true; });
  // Recovery is stable: what the first open keeps, a second open finds again.
  dvrouter::FileJournalOptions options;
  options.dir = dir;
  options.partitions = 4;
  options.fsync = false;
  auto count = [&]() -> long {
    auto opened = dvrouter::FileJournal::Open(options);
    if (!opened.ok()) return -1;
    long n = 0;
    (void)(*opened)->Scan(0, [&](const dvrouter::RecordView&) {
      ++n;
      return true;
    });
    return n;
  };
  const long first = count();
  if (first >= 0) Check(count() == first, "a second recovery finds other records");
  return 0;
}
