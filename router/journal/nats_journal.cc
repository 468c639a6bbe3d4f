#include "router/journal/nats_journal.h"

#include <nats/nats.h>
#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <unordered_map>
#include <utility>

#include "router/common/clock.h"
#include "router/common/thread_name.h"
#include "router/journal/record.h"

namespace dvrouter {

namespace {

constexpr int64_t kFeedWaitMs = 200;
// A consumer that delivers nothing this long while the stream has newer messages is replaced.
constexpr int64_t kFeedStallMs = 3000;
constexpr int64_t kStreamWaitMs = 30'000;  // JetStream not ready yet at start
constexpr int64_t kStartCallMs = 2000;     // one stream-info call at start
constexpr int64_t kMaintenanceMs = 1000;
constexpr int64_t kRetryMs = 100;  // between publishes of an event the stream had no leader for
// One publish attempt waits at most this long for its PubAck (a third of ack_timeout, within
// these bounds) before the event is published again under its Nats-Msg-Id: a publish in flight
// to a server that died, or to a stream leader that died, never gets an answer. At most
// kMaxUnanswered attempts go unanswered: a cluster that is only slow is not sent every event
// several times (nats-server 2.9 replicates a copy before its dedupe drops it).
constexpr int64_t kMinAttemptMs = 250;
constexpr int64_t kMaxAttemptMs = 5000;
constexpr uint32_t kMaxUnanswered = 2;
// The wait of the JetStream API calls (stream state, purges, gets, consumers), also the ones Stop
// waits for: not the whole ack_timeout.
constexpr int64_t kApiWaitMs = 5000;
// Past this share of max_bytes, what every reader has passed is purged.
constexpr double kPurgeAt = 0.8;

std::string NatsText(natsStatus s) {
  const char* last = nats_GetLastError(nullptr);
  std::string out = natsStatus_GetText(s);
  if (last != nullptr && *last != '\0') out += std::string(" (") + last + ")";
  return out;
}

std::string Description(uint32_t partitions) {
  return "dvrouter journal, partitions=" + std::to_string(partitions);
}

}  // namespace

struct NatsJournal::Impl {
  NatsJournalOptions opt;
  std::string subject_prefix;  // "<stream>.p."
  natsOptions* nopts = nullptr;
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  jsOptions jsopts{};

  // An append waiting for its PubAck.
  struct Pending {
    AppendRequest* request = nullptr;
    int64_t started_ms = 0;     // the first attempt
    bool maybe_stored = false;  // an attempt got no answer: it may have been stored
    uint32_t unanswered = 0;    // attempts without an answer
  };
  // Appends waiting for their PubAck, by the message published.
  std::mutex pending_mu;
  std::unordered_map<natsMsg*, Pending> pending;
  std::vector<natsMsg*> retries;     // pending ones to publish again
  std::condition_variable retry_cv;  // with pending_mu: retries or stopping
  std::atomic<bool> stopping{false};
  std::shared_mutex gate;  // Append (shared) against Stop (exclusive)
  std::atomic<uint64_t> refusals{0};

  // Records the feeder consumed, for Read (bounded by read_cache_bytes).
  mutable std::mutex cache_mu;
  std::map<uint64_t, std::string> cache;
  uint64_t cache_bytes = 0;

  // The stream's state, refreshed by the maintenance thread.
  mutable std::mutex state_mu;
  jsStreamState state{};
  std::atomic<uint64_t> last_seen_seq{0};  // the feeder's position
  uint64_t reclaimed_bytes = 0;

  // The retrier has a thread of its own: the maintenance thread's stream calls block while the
  // stream has no leader, just when publishes need sending again.
  std::thread feeder, maintenance, retrier;
  std::mutex wake_mu;
  std::condition_variable wake_cv;
  bool purge_asked = false;

  std::unique_ptr<prometheus::Registry> own_registry;  // without options.registry
  std::unique_ptr<NatsJournalMetrics> metrics;
  prometheus::Counter* acks_ok = nullptr;
  prometheus::Counter* acks_duplicate = nullptr;
  prometheus::Counter* acks_error = nullptr;
  prometheus::Counter* acks_timeout = nullptr;
  prometheus::Counter* retry_no_leader = nullptr;
  prometheus::Counter* retry_no_answer = nullptr;
  prometheus::Counter* retry_error = nullptr;
  prometheus::Histogram* publish_seconds = nullptr;

  // An ordered consumer of the stream (the delivery feed's, a scan's) on a connection of its own,
  // which is closed before the subscription goes (docs/journal-nats.md, "Known limits"):
  // - libnats 3.4's reader thread uses a subscription it looked up without holding it, so a
  //   subscription freed while the server still sends to it is read after its free; closing the
  //   connection joins that thread first;
  // - never Unsubscribe: it deletes the consumer by a name libnats' own thread may be replacing
  //   after a server's loss; the server drops an ephemeral consumer nobody listens to.
  struct StreamConsumer {
    natsConnection* nc = nullptr;
    jsCtx* js = nullptr;
    natsSubscription* sub = nullptr;
    StreamConsumer() = default;
    StreamConsumer(const StreamConsumer&) = delete;
    StreamConsumer& operator=(const StreamConsumer&) = delete;
    ~StreamConsumer() {
      if (nc != nullptr) natsConnection_Close(nc);
      if (sub != nullptr) natsSubscription_Destroy(sub);
      if (js != nullptr) jsCtx_Destroy(js);
      if (nc != nullptr) natsConnection_Destroy(nc);
    }
  };

  ~Impl() {
    if (js != nullptr) jsCtx_Destroy(js);
    if (nc != nullptr) natsConnection_Destroy(nc);
    if (nopts != nullptr) natsOptions_Destroy(nopts);
  }

  static void OnAck(jsCtx*, natsMsg* msg, jsPubAck* pa, jsPubAckErr* pae, void* closure) {
    if (!static_cast<Impl*>(closure)->Acked(msg, pa, pae)) natsMsg_Destroy(msg);
  }

  // How long one attempt waits for its PubAck.
  int64_t AttemptMs() const {
    return std::clamp<int64_t>(opt.ack_timeout_ms / 3, std::min(kMinAttemptMs, opt.ack_timeout_ms),
                               kMaxAttemptMs);
  }

  // Whether a refusal names the stream's budget (max_bytes, max_msgs): not sent again.
  static bool BudgetFull(const std::string& text) {
    return text.find("maximum bytes") != std::string::npos ||
           text.find("maximum messages") != std::string::npos;
  }

  static std::string ErrorText(const jsPubAckErr* pae) {
    return pae != nullptr && pae->ErrText != nullptr && *pae->ErrText != '\0'
               ? std::string(pae->ErrText)
               : NatsText(pae != nullptr ? pae->Err : NATS_ERR);
  }

  // True when `msg` was kept to be published again, while ack_timeout from the first attempt
  // leaves room: the stream had no leader for a moment (no responders), the attempt got no
  // PubAck (lost with a server or a leader that died; at most kMaxUnanswered times), or the
  // server refused it for another reason than the budget (a leader stepping down answers with
  // an error).
  bool Acked(natsMsg* msg, jsPubAck* pa, jsPubAckErr* pae) {
    AppendRequest* request = nullptr;
    int64_t started = 0;
    bool maybe_stored = false;
    {
      std::lock_guard<std::mutex> lock(pending_mu);
      auto it = pending.find(msg);
      if (it == pending.end()) return false;  // already failed by Stop
      Pending& entry = it->second;
      if (pa == nullptr && pae != nullptr && !stopping.load() &&
          SteadyNowMs() - entry.started_ms + kRetryMs < opt.ack_timeout_ms) {
        const bool no_leader = pae->Err == NATS_NO_RESPONDERS;
        const bool no_answer = pae->Err == NATS_TIMEOUT;
        const bool again = no_leader || (no_answer && entry.unanswered < kMaxUnanswered) ||
                           (!no_answer && !BudgetFull(ErrorText(pae)));
        if (again) {
          if (no_answer) {
            entry.maybe_stored = true;
            ++entry.unanswered;
          }
          (no_leader ? retry_no_leader : no_answer ? retry_no_answer : retry_error)->Increment();
          retries.push_back(msg);
          retry_cv.notify_one();
          return true;
        }
      }
      request = entry.request;
      started = entry.started_ms;
      maybe_stored = entry.maybe_stored;
      pending.erase(it);
    }
    AppendResult result;
    if (pa != nullptr) {
      result.seq = pa->Sequence;
      // Stored by an earlier attempt of this append whose PubAck was lost: it is this
      // append's record, not a duplicate of another request's (docs/journal-nats.md).
      result.duplicate = pa->Duplicate && !maybe_stored;
      (result.duplicate ? acks_duplicate : acks_ok)->Increment();
      publish_seconds->Observe(static_cast<double>(SteadyNowMs() - started) / 1000.0);
    } else {
      const std::string text = ErrorText(pae);
      const bool timeout = pae != nullptr && pae->Err == NATS_TIMEOUT;
      (timeout ? acks_timeout : acks_error)->Increment();
      if (BudgetFull(text)) {
        refusals.fetch_add(1);
        AskPurge();
        result.status = Unavailable(
            "journal budget full: undelivered events fill the stream's "
            "max_bytes (" +
            text + ")");
      } else {
        result.status = Unavailable(
            stopping.load() ? "the journal stopped before JetStream acknowledged the event"
            : timeout       ? "no PubAck from JetStream within ack_timeout"
                            : "JetStream refused the event: " + text);
      }
    }
    request->callback->OnAppendDone(result);
    return false;
  }

  // Publishes the messages kept by Acked again, kRetryMs after they came back (retrier thread).
  void Retry() {
    SetThreadName("dv-nats-retry");
    for (;;) {
      std::vector<natsMsg*> again;
      {
        std::unique_lock<std::mutex> lock(pending_mu);
        retry_cv.wait(lock, [&] { return stopping.load() || !retries.empty(); });
        if (stopping.load()) return;
        retry_cv.wait_for(lock, std::chrono::milliseconds(kRetryMs),
                          [&] { return stopping.load(); });
        if (stopping.load()) return;
        again.swap(retries);
      }
      Republish(again);
    }
  }

  void Republish(const std::vector<natsMsg*>& again) {
    for (natsMsg* msg : again) {
      int64_t started = SteadyNowMs();
      {
        std::lock_guard<std::mutex> lock(pending_mu);
        auto it = pending.find(msg);
        if (it != pending.end()) started = it->second.started_ms;
      }
      natsStatus s = NATS_ILLEGAL_STATE;  // stopping: not sent again
      if (!stopping.load()) {
        jsPubOptions po;
        jsPubOptions_Init(&po);
        // One attempt's wait, within what is left of ack_timeout from the first attempt (the
        // Nats-Msg-Id header is still on the message).
        po.MaxWait =
            std::clamp<int64_t>(opt.ack_timeout_ms - (SteadyNowMs() - started), 1, AttemptMs());
        natsMsg* sent = msg;
        s = js_PublishMsgAsync(js, &sent, &po);
        if (s == NATS_OK) continue;
      }
      AppendRequest* request = nullptr;
      {
        std::lock_guard<std::mutex> lock(pending_mu);
        auto it = pending.find(msg);
        if (it != pending.end()) {
          request = it->second.request;
          pending.erase(it);
        }
      }
      natsMsg_Destroy(msg);
      if (request != nullptr) {
        acks_error->Increment();
        AppendResult r;
        r.status = Unavailable(
            s == NATS_ILLEGAL_STATE
                ? std::string("the journal stopped before JetStream acknowledged the event")
                : "journal.nats: publishing again: " + NatsText(s));
        request->callback->OnAppendDone(r);
      }
    }
  }

  void AskPurge() {
    std::lock_guard<std::mutex> lock(wake_mu);
    purge_asked = true;
    wake_cv.notify_all();
  }

  Status Connect() {
    natsStatus s = natsOptions_Create(&nopts);
    std::vector<const char*> urls;
    for (const std::string& u : opt.servers) urls.push_back(u.c_str());
    if (s == NATS_OK) s = natsOptions_SetServers(nopts, urls.data(), static_cast<int>(urls.size()));
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(nopts, -1);
    if (s == NATS_OK) s = natsOptions_SetReconnectWait(nopts, 250);
    if (s == NATS_OK) s = natsOptions_SetTimeout(nopts, 2000);
    if (s == NATS_OK && !opt.user.empty()) {
      s = natsOptions_SetUserInfo(nopts, opt.user.c_str(), opt.password.c_str());
    }
    if (s == NATS_OK && !opt.creds_file.empty()) {
      s = natsOptions_SetUserCredentialsFromFiles(nopts, opt.creds_file.c_str(), nullptr);
    }
    if (s == NATS_OK && !opt.ca_file.empty()) {
      s = natsOptions_SetSecure(nopts, true);
      if (s == NATS_OK) s = natsOptions_LoadCATrustedCertificates(nopts, opt.ca_file.c_str());
    }
    if (s != NATS_OK) return InvalidArgument("journal.nats: client options: " + NatsText(s));
    s = natsConnection_Connect(&nc, nopts);
    if (s != NATS_OK) {
      std::string list;
      for (const std::string& u : opt.servers) list += (list.empty() ? "" : ", ") + u;
      return Unavailable("journal.nats: cannot connect to " + list + ": " + NatsText(s));
    }
    jsOptions_Init(&jsopts);
    jsopts.Wait = std::min(opt.ack_timeout_ms, kApiWaitMs);
    jsopts.PublishAsync.MaxPending = opt.max_pending;
    jsopts.PublishAsync.AckHandler = &Impl::OnAck;
    jsopts.PublishAsync.AckHandlerClosure = this;
    jsopts.PublishAsync.StallWait = 50;  // Append refuses before the client's window is full
    s = natsConnection_JetStream(&js, nc, &jsopts);
    if (s != NATS_OK) return Unavailable("journal.nats: JetStream context: " + NatsText(s));
    return Status::Ok();
  }

  Status EnsureStream() {
    const std::string subjects = opt.stream + ".p.*";
    const std::string description = Description(opt.partitions);
    const char* subject_list[] = {subjects.c_str()};
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = opt.stream.c_str();
    cfg.Description = description.c_str();
    cfg.Subjects = subject_list;
    cfg.SubjectsLen = 1;
    cfg.Retention = js_LimitsPolicy;
    cfg.MaxBytes = static_cast<int64_t>(opt.max_bytes);
    cfg.Discard = js_DiscardNew;  // a full stream refuses; it never drops undelivered events
    cfg.Storage = js_FileStorage;
    cfg.Replicas = opt.replicas;
    cfg.Duplicates = opt.duplicate_window_ms * 1'000'000;
    cfg.AllowDirect = false;
    jsStreamInfo* si = nullptr;
    jsErrCode code = static_cast<jsErrCode>(0);
    // A short wait, asked again by Open: while the servers elect their JetStream leader (a
    // server was lost) a call gets no answer, and a node starting then (a restart after a lost
    // lease) should serve as soon as the election is over, not an ack_timeout later.
    jsOptions quick;
    jsOptions_Init(&quick);
    quick.Wait = std::min<int64_t>(opt.ack_timeout_ms, kStartCallMs);
    natsStatus s = js_GetStreamInfo(&si, js, opt.stream.c_str(), &quick, &code);
    if (s == NATS_NOT_FOUND || code == JSStreamNotFoundErr) {
      s = js_AddStream(&si, js, &cfg, nullptr, &code);
      if (s != NATS_OK) {
        return Unavailable("journal.nats: cannot create stream " + opt.stream + ": " + NatsText(s) +
                           " (code " + std::to_string(code) + ")");
      }
    } else if (s != NATS_OK) {
      return Unavailable("journal.nats: stream " + opt.stream + ": " + NatsText(s));
    } else {
      const char* have = si->Config->Description;
      const bool ours = have != nullptr && std::string(have) == description;
      const bool subjects_match =
          si->Config->SubjectsLen == 1 && std::string(si->Config->Subjects[0]) == subjects;
      if (!ours || !subjects_match) {
        const std::string found = have != nullptr ? have : "(no description)";
        jsStreamInfo_Destroy(si);
        return InvalidArgument("journal.nats: stream " + opt.stream +
                               " is not this journal's (found '" + found + "', want '" +
                               description + "' with subjects " + subjects +
                               "): another stream name, or the same partition count");
      }
      if (si->Config->MaxBytes != cfg.MaxBytes || si->Config->Duplicates != cfg.Duplicates ||
          si->Config->Replicas != cfg.Replicas) {
        jsStreamInfo_Destroy(si);
        si = nullptr;
        s = js_UpdateStream(&si, js, &cfg, nullptr, &code);
        if (s != NATS_OK) {
          return Unavailable("journal.nats: cannot update stream " + opt.stream +
                             " (max_bytes, duplicate_window, replicas): " + NatsText(s) +
                             " (code " + std::to_string(code) + ")");
        }
      }
    }
    Keep(si);
    return Status::Ok();
  }

  // Takes the counters of `si` into `state` (not its lists, which die with it) and frees it.
  void Keep(jsStreamInfo* si) {
    {
      std::lock_guard<std::mutex> lock(state_mu);
      state = si->State;
      state.Subjects = nullptr;
      state.Deleted = nullptr;
      state.DeletedLen = 0;
      state.Lost = nullptr;
    }
    jsStreamInfo_Destroy(si);
  }

  // Refreshes `state` from the server.
  void RefreshState() {
    jsStreamInfo* si = nullptr;
    if (js_GetStreamInfo(&si, js, opt.stream.c_str(), nullptr, nullptr) != NATS_OK) return;
    Keep(si);
  }

  // An ordered consumer of the whole stream from `seq`, on a connection of its own.
  Status Subscribe(uint64_t seq, std::unique_ptr<StreamConsumer>* out) {
    auto c = std::make_unique<StreamConsumer>();
    natsStatus s = natsConnection_Connect(&c->nc, nopts);
    if (s != NATS_OK) return Unavailable("journal.nats: consumer's connection: " + NatsText(s));
    jsOptions o;
    jsOptions_Init(&o);
    o.Wait = jsopts.Wait;
    s = natsConnection_JetStream(&c->js, c->nc, &o);
    if (s != NATS_OK) return Unavailable("journal.nats: consumer's JetStream: " + NatsText(s));
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = opt.stream.c_str();
    so.Ordered = true;
    so.Config.DeliverPolicy = js_DeliverByStartSequence;
    so.Config.OptStartSeq = std::max<uint64_t>(seq, 1);
    jsErrCode code = static_cast<jsErrCode>(0);
    const std::string all = opt.stream + ".p.*";
    s = js_SubscribeSync(&c->sub, c->js, all.c_str(), nullptr, &so, &code);
    if (s != NATS_OK) {
      return Unavailable("journal.nats: consumer from seq " + std::to_string(seq) + ": " +
                         NatsText(s) + " (code " + std::to_string(code) + ")");
    }
    *out = std::move(c);
    return Status::Ok();
  }

  // The stream's last sequence as the maintenance thread last saw it.
  uint64_t StreamLastSeq() const {
    std::lock_guard<std::mutex> lock(state_mu);
    return state.LastSeq;
  }

  // The stream sequence of a consumed message (0 when it has none).
  static uint64_t SeqOf(natsMsg* msg) {
    jsMsgMetaData* meta = nullptr;
    if (natsMsg_GetMetaData(&meta, msg) != NATS_OK) return 0;
    const uint64_t seq = meta->Sequence.Stream;
    jsMsgMetaData_Destroy(meta);
    return seq;
  }

  void Cache(uint64_t seq, const char* data, size_t len) {
    std::lock_guard<std::mutex> lock(cache_mu);
    auto [it, added] = cache.emplace(seq, std::string(data, len));
    if (added) cache_bytes += len;
    while (cache_bytes > opt.read_cache_bytes && !cache.empty()) {
      cache_bytes -= cache.begin()->second.size();
      cache.erase(cache.begin());
    }
  }

  // Committed records to the listener, in sequence order, from after the stream's last message
  // at open.
  void Feed(uint64_t from) {
    SetThreadName("dv-nats-feed");
    std::unique_ptr<StreamConsumer> consumer;
    const auto subscribe = [&](uint64_t seq) {
      consumer.reset();
      while (!stopping.load() && !Subscribe(seq, &consumer).ok()) {
        std::unique_lock<std::mutex> lock(wake_mu);
        wake_cv.wait_for(lock, std::chrono::milliseconds(kFeedWaitMs),
                         [&] { return stopping.load(); });
      }
    };
    subscribe(from);
    int64_t last_progress_ms = SteadyNowMs();  // the last message, or the last subscribe
    bool fed = false;
    while (!stopping.load()) {
      natsMsg* msg = nullptr;
      natsStatus s = consumer != nullptr
                         ? natsSubscription_NextMsg(&msg, consumer->sub, kFeedWaitMs)
                         : NATS_CONNECTION_CLOSED;  // a stop while subscribing
      if (s != NATS_OK) {
        if (fed && opt.listener != nullptr) opt.listener->OnGroupCommitted();
        fed = false;
        // Not a quiet moment but a subscription gone (its consumer deleted, the connection
        // closed), or a consumer gone silent while the stream grew (it lived on a server that
        // died): a new one from the next record, after a pause.
        const bool gone = s != NATS_TIMEOUT;
        const bool silent = !gone && SteadyNowMs() - last_progress_ms > kFeedStallMs &&
                            StreamLastSeq() > last_seen_seq.load();
        if ((gone || silent) && !stopping.load()) {
          std::fprintf(stderr,
                       "dvrouter: journal.nats: the consumer of the stream %s (%s): a new one "
                       "from seq %llu\n",
                       opt.stream.c_str(),
                       gone ? NatsText(s).c_str() : "silent while the stream grew",
                       static_cast<unsigned long long>(last_seen_seq.load() + 1));
          std::unique_lock<std::mutex> lock(wake_mu);
          wake_cv.wait_for(lock, std::chrono::milliseconds(kFeedWaitMs),
                           [&] { return stopping.load(); });
          lock.unlock();
          subscribe(last_seen_seq.load() + 1);
          last_progress_ms = SteadyNowMs();
        }
        continue;
      }
      last_progress_ms = SteadyNowMs();
      const uint64_t seq = SeqOf(msg);
      const char* data = natsMsg_GetData(msg);
      const int len = natsMsg_GetDataLength(msg);
      journal::FrameMeta meta;
      EventHeader header;
      std::string_view body;
      uint32_t frame_len = 0;
      if (seq != 0 && len > 0 &&
          journal::DecodeFrame(data, static_cast<size_t>(len), &meta, &header, &body, &frame_len)
              .ok()) {
        Cache(seq, data, static_cast<size_t>(len));
        last_seen_seq.store(seq);
        if (opt.listener != nullptr) {
          RecordHandle h;
          h.seq = seq;
          h.length = static_cast<uint32_t>(len);
          h.partition = meta.partition;
          opt.listener->OnCommitted(h);
          fed = true;
        }
      } else {
        std::fprintf(stderr,
                     "dvrouter: journal.nats: stream message %llu is not a record: "
                     "skipped\n",
                     static_cast<unsigned long long>(seq));
      }
      natsMsg_Destroy(msg);
      int queued = 0;
      if (fed && (natsSubscription_GetPending(consumer->sub, &queued, nullptr) != NATS_OK ||
                  queued == 0)) {
        if (opt.listener != nullptr) opt.listener->OnGroupCommitted();
        fed = false;
      }
    }
  }

  // Purges what every reader has passed once the stream nears max_bytes, or when asked.
  void Maintain() {
    SetThreadName("dv-nats-maint");
    for (;;) {
      bool asked = false;
      {
        std::unique_lock<std::mutex> lock(wake_mu);
        wake_cv.wait_for(lock, std::chrono::milliseconds(kMaintenanceMs),
                         [&] { return stopping.load() || purge_asked; });
        if (stopping.load()) return;
        asked = purge_asked;
        purge_asked = false;
      }
      RefreshState();
      uint64_t bytes = 0, first = 0;
      {
        std::lock_guard<std::mutex> lock(state_mu);
        bytes = state.Bytes;
        first = state.FirstSeq;
      }
      if (!asked && static_cast<double>(bytes) < kPurgeAt * static_cast<double>(opt.max_bytes)) {
        continue;
      }
      const uint64_t below = opt.listener != nullptr ? opt.listener->ReclaimableBelow() : 0;
      if (below > first) (void)Purge(below, /*for_room=*/true);
    }
  }

  // for_room: to make room in the budget (counted as reclaimed), else for age.
  Result<RetentionResult> Purge(uint64_t below, bool for_room) {
    uint64_t before = 0;
    {
      std::lock_guard<std::mutex> lock(state_mu);
      before = state.Bytes;
    }
    // The cache lets go first: once the server has purged, no read may still find a purged
    // record here (only appends add to the cache, all above `below`). Should the purge fail,
    // reads of those records go to the server, which still has them.
    {
      std::lock_guard<std::mutex> lock(cache_mu);
      while (!cache.empty() && cache.begin()->first < below) {
        cache_bytes -= cache.begin()->second.size();
        cache.erase(cache.begin());
      }
    }
    jsOptions po;
    jsOptions_Init(&po);
    po.Stream.Purge.Sequence = below;
    jsErrCode code = static_cast<jsErrCode>(0);
    natsStatus s = js_PurgeStream(js, opt.stream.c_str(), &po, &code);
    if (s != NATS_OK) {
      return Unavailable("journal.nats: purge below " + std::to_string(below) + ": " + NatsText(s));
    }
    RefreshState();
    RetentionResult r;
    std::lock_guard<std::mutex> lock(state_mu);
    r.bytes_deleted = before > state.Bytes ? before - state.Bytes : 0;
    r.first_retained_seq = state.FirstSeq;
    if (for_room) reclaimed_bytes += r.bytes_deleted;
    return r;
  }

  // The stored message at `seq` into *buffer (the cache first).
  Status Fetch(uint64_t seq, std::string* buffer) {
    {
      std::lock_guard<std::mutex> lock(cache_mu);
      auto it = cache.find(seq);
      if (it != cache.end()) {
        buffer->assign(it->second);
        return Status::Ok();
      }
    }
    natsMsg* msg = nullptr;
    jsErrCode code = static_cast<jsErrCode>(0);
    natsStatus s = js_GetMsg(&msg, js, opt.stream.c_str(), seq, nullptr, &code);
    if (s != NATS_OK) {
      if (code == JSNoMessageFoundErr || s == NATS_NOT_FOUND) {
        return NotFound("journal record " + std::to_string(seq) + " is no longer retained");
      }
      return Unavailable("journal.nats: get " + std::to_string(seq) + ": " + NatsText(s));
    }
    buffer->assign(natsMsg_GetData(msg), static_cast<size_t>(natsMsg_GetDataLength(msg)));
    natsMsg_Destroy(msg);
    return Status::Ok();
  }

  // *buffer holds a stored message of `seq`: rewritten as the plain record (format 1, the body
  // decompressed, its seq the stream's: what a record cache, a DLQ entry and a replay hold),
  // with `slack` spare bytes past it; *out views it.
  static Status View(uint64_t seq, size_t slack, std::string* buffer, EventHeader* header,
                     RecordView* out) {
    journal::FrameMeta meta;
    std::string_view body;
    uint32_t len = 0;
    Status st = journal::DecodeFrame(buffer->data(), buffer->size(), &meta, header, &body, &len);
    thread_local std::string raw;
    if (st.ok()) {
      Result<std::string_view> plain = journal::RawBody(meta, body, &raw);
      if (plain.ok()) {
        if (plain->data() != raw.data()) raw.assign(*plain);
      } else {
        st = plain.status();
      }
    }
    if (!st.ok()) {
      return Internal("journal record " + std::to_string(seq) +
                      " does not read back: " + st.ToString());
    }
    meta.seq = seq;
    meta.codec = Codec::kNone;
    meta.raw_length = 0;
    buffer->clear();
    buffer->reserve(raw.size() + 512 + slack);
    const uint32_t frame_len = journal::EncodeFramePrefix(meta, *header, raw, buffer);
    buffer->append(raw);
    out->handle.seq = seq;
    out->handle.length = frame_len;
    out->handle.partition = meta.partition;
    out->key = meta.key;
    out->received_ms = meta.received_ms;
    out->header = header;
    out->body = std::string_view(buffer->data() + buffer->size() - raw.size(), raw.size());
    return Status::Ok();
  }
};

NatsJournalMetrics::NatsJournalMetrics(prometheus::Registry* r)
    : acks(prometheus::BuildCounter()
               .Name("dvrouter_nats_pub_acks_total")
               .Help("JetStream publish answers for journal appends, by result")
               .Register(*r)),
      ok(acks.Add({{"result", "ok"}})),
      duplicate(acks.Add({{"result", "duplicate"}})),
      error(acks.Add({{"result", "error"}})),
      timeout(acks.Add({{"result", "timeout"}})),
      publish_seconds(
          prometheus::BuildHistogram()
              .Name("dvrouter_nats_publish_duration_seconds")
              .Help("From a journal append's publish to its PubAck (stored on a quorum)")
              .Register(*r)
              .Add({}, prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.002, 0.005, 0.01,
                                                               0.02, 0.05, 0.1, 0.25, 1, 5})),
      retries(prometheus::BuildCounter()
                  .Name("dvrouter_nats_publish_retries_total")
                  .Help("Journal appends published again under their Nats-Msg-Id, by reason")
                  .Register(*r)),
      retry_no_leader(retries.Add({{"reason", "no_responders"}})),
      retry_no_answer(retries.Add({{"reason", "no_pub_ack"}})),
      retry_error(retries.Add({{"reason", "error"}})) {}

NatsJournal::NatsJournal(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

NatsJournal::~NatsJournal() { Stop(); }

Result<std::unique_ptr<NatsJournal>> NatsJournal::Open(NatsJournalOptions options) {
  if (options.servers.empty()) return InvalidArgument("journal.nats.servers: none given");
  auto impl = std::make_unique<Impl>();
  impl->opt = std::move(options);
  impl->subject_prefix = impl->opt.stream + ".p.";
  if (impl->opt.registry == nullptr) {
    impl->own_registry = std::make_unique<prometheus::Registry>();
    impl->opt.registry = impl->own_registry.get();
  }
  impl->metrics = std::make_unique<NatsJournalMetrics>(impl->opt.registry);
  impl->acks_ok = &impl->metrics->ok;
  impl->acks_duplicate = &impl->metrics->duplicate;
  impl->acks_error = &impl->metrics->error;
  impl->acks_timeout = &impl->metrics->timeout;
  impl->retry_no_leader = &impl->metrics->retry_no_leader;
  impl->retry_no_answer = &impl->metrics->retry_no_answer;
  impl->retry_error = &impl->metrics->retry_error;
  impl->publish_seconds = &impl->metrics->publish_seconds;
  if (Status st = impl->Connect(); !st.ok()) return st;
  // A cluster that just started elects its JetStream leader first: keep asking for a while.
  const int64_t deadline = SteadyNowMs() + kStreamWaitMs;
  for (;;) {
    Status st = impl->EnsureStream();
    if (st.ok()) break;
    if (st.code() != StatusCode::kUnavailable || SteadyNowMs() > deadline) return st;
    std::fprintf(stderr, "dvrouter: %s: trying again\n", st.ToString().c_str());
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  uint64_t from = 0;
  {
    std::lock_guard<std::mutex> lock(impl->state_mu);
    from = impl->state.LastSeq + 1;
  }
  impl->last_seen_seq = from - 1;
  Impl* raw = impl.get();
  raw->feeder = std::thread([raw, from] { raw->Feed(from); });
  raw->maintenance = std::thread([raw] { raw->Maintain(); });
  raw->retrier = std::thread([raw] { raw->Retry(); });
  return std::unique_ptr<NatsJournal>(new NatsJournal(std::move(impl)));
}

void NatsJournal::Append(AppendRequest* request) {
  Impl& m = *impl_;
  const auto refuse = [&](Status status) {
    AppendResult r;
    r.status = std::move(status);
    request->callback->OnAppendDone(r);
  };
  // Held from the stopping check to the publish: Stop waits for it, so no publish starts once
  // Stop has collected what is pending.
  std::shared_lock<std::shared_mutex> gate(m.gate);
  if (m.stopping.load()) return refuse(Unavailable("the journal is stopping"));
  {
    // A full window answers at once instead of blocking this (I/O) thread in the client.
    std::lock_guard<std::mutex> lock(m.pending_mu);
    if (static_cast<int64_t>(m.pending.size()) >= m.opt.max_pending) {
      return refuse(Unavailable("journal.nats: max_pending publishes in flight"));
    }
  }
  journal::CompressBody(request->body, m.opt.compression_level, nullptr, &request->stored);
  if (m.opt.compression == Codec::kNone) {
    request->stored.codec = Codec::kNone;
    request->stored.bytes.clear();
  }
  const std::string_view stored = request->stored.codec == Codec::kNone
                                      ? request->body
                                      : std::string_view(request->stored.bytes);
  journal::FrameMeta meta;
  meta.seq = 0;  // the stream sequence, known from the PubAck; readers take it from the stream
  meta.received_ms = request->received_ms;
  meta.key = request->key;
  meta.partition = request->partition;
  meta.codec = request->stored.codec;
  meta.raw_length = static_cast<uint32_t>(request->body.size());
  thread_local std::string frame;
  frame.clear();
  journal::EncodeFramePrefix(meta, *request->header, stored, &frame);
  frame.append(stored);
  const int64_t max_payload = natsConnection_GetMaxPayload(m.nc);
  if (max_payload > 0 && static_cast<int64_t>(frame.size()) > max_payload) {
    // Refused for good (413): Dataverse's retry or reconciliation would bring the same bytes.
    return refuse(InvalidArgument("the event's record (" + std::to_string(frame.size()) +
                                  " bytes) is larger than the NATS servers' max_payload (" +
                                  std::to_string(max_payload) + ")"));
  }
  const std::string subject = m.subject_prefix + std::to_string(request->partition);
  natsMsg* msg = nullptr;
  natsStatus s =
      natsMsg_Create(&msg, subject.c_str(), nullptr, frame.data(), static_cast<int>(frame.size()));
  if (s != NATS_OK) return refuse(Unavailable("journal.nats: message: " + NatsText(s)));
  const std::string id = request->key.ToHex();
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MsgId = id.c_str();
  po.MaxWait = m.AttemptMs();
  natsMsg* key = msg;
  {
    std::lock_guard<std::mutex> lock(m.pending_mu);
    m.pending[key] = Impl::Pending{request, SteadyNowMs(), false};
  }
  s = js_PublishMsgAsync(m.js, &msg, &po);
  if (s != NATS_OK) {
    bool ours = false;
    {
      std::lock_guard<std::mutex> lock(m.pending_mu);
      ours = m.pending.erase(key) != 0;
    }
    if (msg != nullptr) natsMsg_Destroy(msg);
    if (ours) {
      m.acks_error->Increment();
      refuse(Unavailable("journal.nats: publish: " + NatsText(s)));
    }
  }
}

Status NatsJournal::Scan(uint64_t from_seq, const std::function<bool(const RecordView&)>& fn,
                         ScanHint) {
  Impl& m = *impl_;
  m.RefreshState();
  uint64_t last = 0, first = 0, msgs = 0;
  {
    std::lock_guard<std::mutex> lock(m.state_mu);
    last = m.state.LastSeq;
    first = m.state.FirstSeq;
    msgs = m.state.Msgs;
  }
  // Nothing retained (all purged), or nothing from there on.
  if (msgs == 0 || from_seq > last || last == 0) return Status::Ok();
  from_seq = std::max(from_seq, first);
  std::unique_ptr<Impl::StreamConsumer> consumer;
  if (Status st = m.Subscribe(from_seq, &consumer); !st.ok()) return st;
  std::string buffer;
  EventHeader header;
  RecordView view;
  Status result = Status::Ok();
  for (;;) {
    natsMsg* msg = nullptr;
    natsStatus s = natsSubscription_NextMsg(&msg, consumer->sub, m.opt.ack_timeout_ms);
    if (s != NATS_OK) {
      result = Unavailable("journal.nats: scan stalled before seq " + std::to_string(last) + ": " +
                           NatsText(s));
      break;
    }
    const uint64_t seq = Impl::SeqOf(msg);
    buffer.assign(natsMsg_GetData(msg), static_cast<size_t>(natsMsg_GetDataLength(msg)));
    natsMsg_Destroy(msg);
    Status st = Impl::View(seq, 0, &buffer, &header, &view);
    if (!st.ok()) {
      std::fprintf(stderr, "dvrouter: journal.nats: %s: skipped\n", st.ToString().c_str());
    } else if (!fn(view)) {
      break;
    }
    if (seq >= last) break;
  }
  return result;
}

Status NatsJournal::Read(const RecordHandle& handle, std::string* buffer, EventHeader* header,
                         RecordView* out) {
  constexpr size_t kMaxSlack = 4096;
  const size_t slack = std::min(
      kMaxSlack, buffer->capacity() > handle.length ? buffer->capacity() - handle.length : 0);
  if (Status st = impl_->Fetch(handle.seq, buffer); !st.ok()) return st;
  return Impl::View(handle.seq, slack, buffer, header, out);
}

Result<RetentionResult> NatsJournal::DeleteBefore(uint64_t below_seq, int64_t min_age_ms) {
  Impl& m = *impl_;
  m.RefreshState();
  uint64_t first = 0, last = 0;
  {
    std::lock_guard<std::mutex> lock(m.state_mu);
    first = m.state.FirstSeq;
    last = m.state.LastSeq;
  }
  below_seq = std::min(below_seq, last);  // the newest record stays, as a file journal's segment
  // Only records older than min_age: the first one younger bounds the purge (found by halving,
  // received_ms grows with seq).
  const int64_t cutoff = WallNowMs() - min_age_ms;
  uint64_t lo = first, hi = below_seq;
  std::string buffer;
  EventHeader header;
  RecordView view;
  while (lo < hi) {
    const uint64_t mid = lo + (hi - lo) / 2;
    Status st = m.Fetch(mid, &buffer);
    if (st.ok()) st = Impl::View(mid, 0, &buffer, &header, &view);
    if (st.code() == StatusCode::kNotFound) {
      lo = mid + 1;  // a gap (purged meanwhile): look after it
      continue;
    }
    if (!st.ok()) return st;  // not knowing its age, purge nothing now
    if (view.received_ms <= cutoff) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  if (lo <= first) return RetentionResult{0, 0, first};
  return m.Purge(lo, /*for_room=*/false);
}

JournalStats NatsJournal::Stats() const {
  const Impl& m = *impl_;
  JournalStats s;
  {
    std::lock_guard<std::mutex> lock(m.state_mu);
    s.next_seq = m.state.LastSeq + 1;
    s.bytes = m.state.Bytes;
    s.segments = 1;
    s.oldest_received_ms = m.state.Msgs > 0 ? m.state.FirstTime / 1'000'000 : 0;
    s.reclaimed_bytes = m.reclaimed_bytes;
  }
  s.next_seq = std::max(s.next_seq, m.last_seen_seq.load() + 1);
  s.budget_bytes = m.opt.max_bytes;
  s.budget_refusals = m.refusals.load();
  {
    std::lock_guard<std::mutex> lock(const_cast<Impl&>(m).pending_mu);
    s.pending = m.pending.size();
  }
  return s;
}

uint64_t NatsJournal::BytesFrom(uint64_t seq) const {
  const Impl& m = *impl_;
  std::lock_guard<std::mutex> lock(m.state_mu);
  if (m.state.Msgs == 0 || seq > m.state.LastSeq) return 0;
  if (seq <= m.state.FirstSeq) return m.state.Bytes;
  // Records are of similar size: the share of the stream from `seq` on.
  const double share = static_cast<double>(m.state.LastSeq - seq + 1) /
                       static_cast<double>(m.state.LastSeq - m.state.FirstSeq + 1);
  return static_cast<uint64_t>(share * static_cast<double>(m.state.Bytes));
}

void NatsJournal::Stop() {
  Impl& m = *impl_;
  if (m.stopping.exchange(true)) return;
  { std::unique_lock<std::shared_mutex> wait_for_appends(m.gate); }
  if (m.js != nullptr) {
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = m.opt.ack_timeout_ms;
    js_PublishAsyncComplete(m.js, &po);
  }
  // What is still waiting was not acknowledged: refused, never claimed durable.
  std::vector<AppendRequest*> left;
  {
    std::lock_guard<std::mutex> lock(m.pending_mu);
    for (auto& [msg, entry] : m.pending) left.push_back(entry.request);
    m.pending.clear();
    for (natsMsg* msg : m.retries) natsMsg_Destroy(msg);
    m.retries.clear();
    m.retry_cv.notify_all();
  }
  for (AppendRequest* request : left) {
    AppendResult r;
    r.status = Unavailable("the journal stopped before JetStream acknowledged the event");
    request->callback->OnAppendDone(r);
  }
  {
    std::lock_guard<std::mutex> lock(m.wake_mu);
    m.wake_cv.notify_all();
  }
  if (m.feeder.joinable()) m.feeder.join();
  if (m.maintenance.joinable()) m.maintenance.join();
  if (m.retrier.joinable()) m.retrier.join();
  if (m.nc != nullptr) natsConnection_Close(m.nc);
}

}  // namespace dvrouter
