// NatsCursorStore: the delivery cursors in a key-value bucket (`<stream>_cursors`, no TTL), so
// that the node which takes the delivery lease over resumes where the last leader stopped
// (docs/journal-nats.md, "Several router nodes"). One key per adapter, `c.<adapter>`, whose
// value is "dvrouter-cursors 1 <partitions>" and the partitions' cursors, space-separated.
// Saves are fenced by the lease: a node that does not hold it (any more) writes nothing.
//
// Threads: Load and Save from one thread at a time (the engine's Start and maintenance thread).
#pragma once

#include <functional>
#include <string>

#include "router/delivery/cursor_store.h"

typedef struct __kvStore kvStore;  // <nats/nats.h>

namespace dvrouter {

class NatsCursorStore final : public CursorStore {
 public:
  // `bucket` must outlive this object; `may_write` says whether this node holds the lease.
  NatsCursorStore(kvStore* bucket, std::string bucket_name, std::function<bool()> may_write);

  // InvalidArgument naming the bucket and key for a value that is not this store's, or one of
  // another partition count; Unavailable when JetStream did not answer for 30 s (it is asked
  // again meanwhile: a bucket whose leader is being elected answers within seconds).
  Result<CursorMap> Load(uint32_t partitions) const override;
  // Only the adapters whose cursors changed since the last Load or Save are written.
  Status Save(const CursorMap& cursors) const override;

 private:
  Result<CursorMap> LoadOnce(uint32_t partitions) const;

  kvStore* const kv_;
  const std::string bucket_name_;
  const std::function<bool()> may_write_;
  mutable CursorMap written_;  // as last loaded or saved
};

}  // namespace dvrouter
