// The router's own files as it finds them on disk, damaged in any way: the DLQ log and the
// cursor file. Loading never crashes, and what the DLQ keeps survives being opened again.
#include <cstdint>
#include <fstream>
#include <optional>
#include <string>

#include "router/delivery/cursor_store.h"
#include "router/delivery/dlq.h"
#include "tests/fuzz/fuzz_util.h"

using dvrouter::fuzz::Check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string content(reinterpret_cast<const char*>(data) + 1, size - 1);
  const std::string dir = dvrouter::fuzz::ScratchDir("files");
  if (data[0] % 2 == 0) {
    const std::string path = dir + "/dlq.log";
    std::ofstream(path, std::ios::binary) << content;
    size_t kept = 0;
    {
      auto dlq = dvrouter::DeadLetterQueue::Open(path);
      if (!dlq.ok()) return 0;
      kept = (*dlq)->List("", std::nullopt, true).size();
    }
    auto again = dvrouter::DeadLetterQueue::Open(path);
    Check(again.ok(), "a DLQ the router opened once does not open again");
    Check((*again)->List("", std::nullopt, true).size() == kept, "reopening changes the DLQ");
  } else {
    const std::string path = dir + "/cursors";
    std::ofstream(path, std::ios::binary) << content;
    dvrouter::FileCursorStore store(path);
    auto cursors = store.Load(4);
    if (cursors.ok()) {
      for (const auto& [adapter, per_partition] : *cursors) {
        Check(per_partition.size() == 4, "cursors for another partition count");
      }
      // What loads, saves and loads back the same.
      Check(store.Save(*cursors).ok(), "loaded cursors do not save");
      auto back = store.Load(4);
      Check(back.ok() && *back == *cursors, "saved cursors load differently");
    }
  }
  return 0;
}
