// Partitioning: which partition an event belongs to.
//
// partition = XXH3-64(table logical name, 0x1f, lowercase row id) mod P. XXH3's output is
// specified byte for byte, so the mapping is the same on every platform and release; P is fixed
// when a journal is created and recorded in its metadata. Pure function: any thread.
#pragma once

#include <cstdint>
#include <string_view>

namespace dvrouter {

uint64_t RecordHash(std::string_view table, std::string_view row_id);
// The same value through XXH3's streaming state, for any length: what RecordHash does for keys
// over 256 bytes (and the benchmark's baseline for the one-call path of the others).
uint64_t StreamingRecordHash(std::string_view table, std::string_view row_id);
uint32_t PartitionOf(std::string_view table, std::string_view row_id, uint32_t partitions);

}  // namespace dvrouter
