// AttributeExtractor: what changed, as plain JSON, from a Dataverse webhook body.
//
// Reads InputParameters["Target"] (an Entity for Create/Update, an EntityReference for Delete)
// and converts the serializer's shapes into the values every sink wants (the same for all
// adapters; docs/adapters/lake.md): "/Date(ms±hhmm)/" → ISO-8601 UTC with milliseconds,
// OptionSetValue and Money → their number, EntityReference → {"id","logicalname","name"},
// Entity → {"id","logicalname","attributes":{...}}, EntityCollection → array of entities,
// OptionSetValue collections → arrays of numbers, [{"key","value"}] collections → objects.
// Numbers keep their exact text; strings are re-escaped; ISO date strings pass through.
//
// One extractor per thread (it owns a simdjson parser). Not used on the ingress path: delivery
// workers call it once per event that a route needs the columns of.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "router/common/status.h"

namespace dvrouter {

struct ChangeSet {
  bool has_target = false;    // false: no Target (custom actions, size-exceeded bodies)
  bool is_reference = false;  // Target is an EntityReference (Delete): no attributes
  std::string entity;         // Target.LogicalName
  std::string id;             // Target.Id, lowercase
  std::string attributes;     // JSON object of the converted Target attributes ("{}" if none)
  std::vector<std::string> columns;  // the Target's attribute names, in body order

  void Clear();
};

class AttributeExtractor {
 public:
  explicit AttributeExtractor(size_t max_body_bytes);
  ~AttributeExtractor();
  AttributeExtractor(const AttributeExtractor&) = delete;
  AttributeExtractor& operator=(const AttributeExtractor&) = delete;

  // Same buffer contract as Decoder::Decode (capacity >= len + 64 avoids a copy).
  Status Extract(const char* data, size_t len, size_t capacity, ChangeSet* out);
  // The same ChangeSet from Target's value alone, the bytes the decoder found it in
  // (EventHeader::target_*): only the Target is parsed, not the whole body (a fifth of it or
  // less in Dataverse's bodies). Same buffer contract.
  Status ExtractTarget(const char* data, size_t len, size_t capacity, ChangeSet* out);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The calling thread's extractor (created on first use; bodies up to the journal's frame limit).
// For adapters converting rows on delivery worker threads.
AttributeExtractor& ThreadAttributeExtractor();

// One event's ChangeSet, extracted on first use and then shared: every adapter an event goes to
// converts the same Target, so the delivery engine attaches one memo per event (Delivery::changes)
// and the event's body is parsed once, not once per adapter. Get is safe from any thread; all
// callers must pass the same body.
class ChangeMemo {
 public:
  Status Get(std::string_view body, const ChangeSet** out);
  // The body at `data` may be read up to `readable` bytes: with simdjson's padding there, Get
  // parses it in place instead of copying it. Set before any Get; Reset forgets it.
  void SetReadable(const char* data, size_t readable) {
    readable_data_ = data;
    readable_ = readable;
  }
  // Where Target's value lies in the body, as the decoder found it (EventHeader::target_*;
  // length 0: not known): Get then parses only those bytes (ExtractTarget). Set before any Get;
  // Reset forgets it.
  void SetTarget(uint32_t offset, uint32_t length) {
    target_offset_ = offset;
    target_length_ = length;
  }
  // Asks the CPU to start loading the extracted attributes, when the memo has them (nothing
  // otherwise). Encoders call it a few events ahead (PrefetchAhead, adapters/adapter.h): a batch
  // built long after its records were read finds their attributes out of the cache.
  void Prefetch() const;
  // Forgets the extraction, keeping the storage, for the next event. Not while a Get may run.
  void Reset();
  // Extractions by all memos so far, process-wide (tests); those that parsed the body in place,
  // and those that parsed only the Target.
  static uint64_t Extractions();
  static uint64_t InPlaceExtractions();
  static uint64_t TargetExtractions();
  // Heap bytes its ChangeSet keeps (approximately), for memory accounting.
  uint64_t StorageBytes() const;

 private:
  std::mutex mu_;
  std::atomic<bool> done_{false};
  Status status_;
  ChangeSet changes_;
  const char* readable_data_ = nullptr;
  size_t readable_ = 0;
  uint32_t target_offset_ = 0;
  uint32_t target_length_ = 0;
};

// The ChangeSet of `body`: from `memo` when there is one, otherwise extracted by the calling
// thread's extractor into *scratch. *out is valid while the memo (or scratch) lives.
Status ExtractChanges(std::string_view body, ChangeMemo* memo, ChangeSet* scratch,
                      const ChangeSet** out);

// ms since the epoch → "YYYY-MM-DDTHH:MM:SS.mmmZ".
std::string FormatIsoUtc(int64_t ms);
// The same, appended to *out (the row encoders: no string per date).
void AppendIsoUtc(std::string* out, int64_t ms);

}  // namespace dvrouter
