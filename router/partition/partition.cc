#include "router/partition/partition.h"

#define XXH_STATIC_LINKING_ONLY  // XXH3 state on the stack
#include <xxhash.h>

#include <cstring>

namespace dvrouter {

uint64_t RecordHash(std::string_view table, std::string_view row_id) {
  // The same bytes hashed in one call when they fit (every Dataverse table and GUID does): XXH3's
  // streaming state costs more than hashing a few dozen bytes. Same value either way.
  char whole[256];
  if (table.size() + 1 + row_id.size() <= sizeof(whole)) {
    std::memcpy(whole, table.data(), table.size());
    whole[table.size()] = '\x1f';
    char* out = whole + table.size() + 1;
    for (char c : row_id) *out++ = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    return XXH3_64bits(whole, static_cast<size_t>(out - whole));
  }
  return StreamingRecordHash(table, row_id);
}

uint64_t StreamingRecordHash(std::string_view table, std::string_view row_id) {
  XXH3_state_t state;
  XXH3_INITSTATE(&state);  // a stack state must be initialized: reset_withSeed reads its old seed
  XXH3_64bits_reset(&state);
  XXH3_64bits_update(&state, table.data(), table.size());
  XXH3_64bits_update(&state, "\x1f", 1);
  // Row ids are canonical lowercase GUIDs after decode; fold case here too so a caller that
  // passes another spelling still lands on the same partition.
  char lowered[64];
  while (!row_id.empty()) {
    size_t n = row_id.size() < sizeof(lowered) ? row_id.size() : sizeof(lowered);
    for (size_t i = 0; i < n; ++i) {
      char c = row_id[i];
      lowered[i] = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    }
    XXH3_64bits_update(&state, lowered, n);
    row_id.remove_prefix(n);
  }
  return XXH3_64bits_digest(&state);
}

uint32_t PartitionOf(std::string_view table, std::string_view row_id, uint32_t partitions) {
  return partitions == 0 ? 0 : static_cast<uint32_t>(RecordHash(table, row_id) % partitions);
}

}  // namespace dvrouter
