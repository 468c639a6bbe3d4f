// NatsDlqLog: the dead-letter queue's lines (entries and replay markers, dlq.h) in a JetStream
// stream, `<stream>_DLQ` (subject `<stream>_DLQ.log`, the journal's replicas, no limits), so the
// node that takes the delivery lease over sees and replays the entries of the leaders before it
// (docs/journal-nats.md, "Several router nodes"). One message per line, its stream sequence is
// the line's location; each message carries `Nats-Msg-Id` (a hash of the line), so a line
// published again after an unanswered publish is stored once.
//
// Threads: called under the DeadLetterQueue's lock (engine workers, the admin threads).
#pragma once

#include <memory>
#include <string>

#include "router/delivery/dlq.h"

namespace dvrouter {

class NatsKv;

class NatsDlqLog final : public DlqLog {
 public:
  // Creates the stream `name` when missing; `kv` must outlive this object.
  static Result<std::unique_ptr<NatsDlqLog>> Open(NatsKv* kv, const std::string& name,
                                                  int64_t replicas);

  const std::string& name() const override { return name_; }
  // Reads every message from the first (waiting up to 30 s for a stream being elected).
  Status Load(const std::function<void(std::string_view, uint64_t, uint32_t)>& fn) override;
  Status Append(const std::vector<std::string>& lines, std::vector<uint64_t>* locations) override;
  Result<std::string> Read(uint64_t location, uint32_t length) const override;

 private:
  NatsDlqLog(NatsKv* kv, std::string name) : kv_(kv), name_(std::move(name)) {}
  Status LoadOnce(const std::function<void(std::string_view, uint64_t, uint32_t)>& fn);

  NatsKv* const kv_;
  const std::string name_;
};

}  // namespace dvrouter
