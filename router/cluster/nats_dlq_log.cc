#include "router/cluster/nats_dlq_log.h"

#include <nats/nats.h>
#include <xxhash.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "router/cluster/nats_kv.h"
#include "router/common/clock.h"

namespace dvrouter {

namespace {
constexpr int64_t kLoadWaitMs = 30'000;
}

Result<std::unique_ptr<NatsDlqLog>> NatsDlqLog::Open(NatsKv* kv, const std::string& name,
                                                     int64_t replicas) {
  const std::string subject = name + ".log";
  const char* subjects[] = {subject.c_str()};
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  cfg.Name = name.c_str();
  cfg.Description = "dvrouter dead-letter queue";
  cfg.Subjects = subjects;
  cfg.SubjectsLen = 1;
  cfg.Retention = js_LimitsPolicy;
  cfg.Storage = js_FileStorage;
  cfg.Replicas = replicas;
  const int64_t deadline = SteadyNowMs() + kLoadWaitMs;
  for (;;) {
    jsStreamInfo* si = nullptr;
    jsErrCode code = static_cast<jsErrCode>(0);
    natsStatus s = js_GetStreamInfo(&si, kv->js(), name.c_str(), nullptr, &code);
    if (s == NATS_NOT_FOUND || code == JSStreamNotFoundErr) {
      s = js_AddStream(&si, kv->js(), &cfg, nullptr, &code);
    }
    if (si != nullptr) jsStreamInfo_Destroy(si);
    if (s == NATS_OK) break;
    if (SteadyNowMs() >= deadline) {
      return Unavailable("dead-letter stream " + name + ": " + NatsErrorText(s));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  return std::unique_ptr<NatsDlqLog>(new NatsDlqLog(kv, name));
}

Status NatsDlqLog::Load(const std::function<void(std::string_view, uint64_t, uint32_t)>& fn) {
  const int64_t deadline = SteadyNowMs() + kLoadWaitMs;
  for (;;) {
    // Nothing is handed to `fn` before the whole stream was read: a retry starts clean.
    std::vector<std::pair<std::string, uint64_t>> lines;
    Status st = LoadOnce([&](std::string_view line, uint64_t seq, uint32_t) {
      lines.emplace_back(std::string(line), seq);
    });
    if (st.ok()) {
      for (const auto& [line, seq] : lines) fn(line, seq, static_cast<uint32_t>(line.size()));
      return st;
    }
    if (st.code() != StatusCode::kUnavailable || SteadyNowMs() >= deadline) return st;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
}

Status NatsDlqLog::LoadOnce(const std::function<void(std::string_view, uint64_t, uint32_t)>& fn) {
  jsStreamInfo* si = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  natsStatus s = js_GetStreamInfo(&si, kv_->js(), name_.c_str(), nullptr, &code);
  if (s != NATS_OK) return Unavailable("dead-letter stream " + name_ + ": " + NatsErrorText(s));
  const uint64_t first = si->State.FirstSeq, last = si->State.LastSeq, count = si->State.Msgs;
  jsStreamInfo_Destroy(si);
  if (count == 0) return Status::Ok();
  for (uint64_t seq = first; seq <= last; ++seq) {
    natsMsg* msg = nullptr;
    s = js_GetMsg(&msg, kv_->js(), name_.c_str(), seq, nullptr, &code);
    if (s == NATS_NOT_FOUND || code == JSNoMessageFoundErr) continue;  // deleted
    if (s != NATS_OK) {
      return Unavailable("dead-letter stream " + name_ + ", message " + std::to_string(seq) + ": " +
                         NatsErrorText(s));
    }
    const int len = natsMsg_GetDataLength(msg);
    fn(std::string_view(natsMsg_GetData(msg), static_cast<size_t>(len)), seq,
       static_cast<uint32_t>(len));
    natsMsg_Destroy(msg);
  }
  return Status::Ok();
}

Status NatsDlqLog::Append(const std::vector<std::string>& lines, std::vector<uint64_t>* locations) {
  locations->clear();
  const std::string subject = name_ + ".log";
  for (const std::string& line : lines) {
    char id[24];
    std::snprintf(id, sizeof(id), "%016llx",
                  static_cast<unsigned long long>(XXH3_64bits(line.data(), line.size())));
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = id;
    jsPubAck* pa = nullptr;
    jsErrCode code = static_cast<jsErrCode>(0);
    const natsStatus s = js_Publish(&pa, kv_->js(), subject.c_str(), line.data(),
                                    static_cast<int>(line.size()), &po, &code);
    if (s != NATS_OK) {
      return Unavailable("dead-letter stream " + name_ + ": " + NatsErrorText(s));
    }
    locations->push_back(pa->Sequence);
    jsPubAck_Destroy(pa);
  }
  return Status::Ok();
}

Result<std::string> NatsDlqLog::Read(uint64_t location, uint32_t) const {
  natsMsg* msg = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  const natsStatus s = js_GetMsg(&msg, kv_->js(), name_.c_str(), location, nullptr, &code);
  if (s != NATS_OK) {
    return Unavailable("dead-letter stream " + name_ + ", message " + std::to_string(location) +
                       ": " + NatsErrorText(s));
  }
  std::string line(natsMsg_GetData(msg), static_cast<size_t>(natsMsg_GetDataLength(msg)));
  natsMsg_Destroy(msg);
  return line;
}

}  // namespace dvrouter
