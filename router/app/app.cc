#include "router/app/app.h"

#include <sys/stat.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <thread>

#include "router/ingress/server.h"
#include "router/ingress/webhook_handler.h"
#include "router/journal/file_journal.h"
#include "router/metrics/metrics.h"

namespace dvrouter {

struct App::Impl {
  Impl(Config c, AppHooks h)
      : config(std::move(c)),
        hooks(h),
        runtime(config.ingress.io_threads),
        webhook(config.ingress, config.journal.partitions, config.ingress.io_threads, &metrics),
        admin(&metrics, [this] { RefreshGauges(); }) {}

  // Runs on an admin I/O thread, possibly while Start() is still recovering: it reads the
  // components through atomics published once they are ready.
  void RefreshGauges() {
    if (HttpServer* s = ingress_ready.load(std::memory_order_acquire)) {
      metrics.connections_open.Set(static_cast<double>(s->connections()));
    }
    if (FileJournal* j = journal_ready.load(std::memory_order_acquire)) {
      const JournalStats stats = j->Stats();
      metrics.journal_next_seq.Set(static_cast<double>(stats.next_seq));
      metrics.journal_pending.Set(static_cast<double>(stats.pending));
    }
  }

  Config config;
  AppHooks hooks;
  std::atomic<HttpServer*> ingress_ready{nullptr};
  std::atomic<FileJournal*> journal_ready{nullptr};
  std::atomic<uint16_t> ingress_port{0};
  std::atomic<uint16_t> admin_port{0};
  RouterMetrics metrics;
  IoRuntime runtime;
  WebhookHandler webhook;
  AdminHandler admin;
  std::unique_ptr<HttpServer> admin_server;
  std::unique_ptr<HttpServer> ingress;
  std::unique_ptr<FileJournal> journal;
};

App::App(Config config, AppHooks hooks) : impl_(std::make_unique<Impl>(std::move(config), hooks)) {}

App::~App() { Shutdown(); }

Status App::Start() {
  Impl& m = *impl_;
  m.runtime.Start();
  m.admin_server = std::make_unique<HttpServer>(&m.runtime, &m.admin, HttpServerLimits{});
  if (Status st = m.admin_server->Listen(m.config.admin.listen); !st.ok()) return st;
  m.admin_port = m.admin_server->port();

  FileJournalOptions jo;
  jo.dir = m.config.journal.data_dir + "/journal";
  jo.partitions = m.config.journal.partitions;
  jo.segment_bytes = m.config.journal.segment_bytes;
  jo.disk_budget_bytes = m.config.journal.disk_budget_bytes;
  jo.fsync = m.config.journal.fsync;
  jo.dedupe_window_ms = static_cast<int64_t>(m.config.dedupe.window_ms);
  jo.dedupe_max_entries = m.config.dedupe.max_entries;
  jo.max_batch_events = m.config.journal.max_batch_events;
  jo.observer = &m.metrics;
  jo.io = m.hooks.journal_io;
  if (::mkdir(m.config.journal.data_dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return ErrnoStatus("mkdir " + m.config.journal.data_dir, errno);
  }
  auto journal = FileJournal::Open(std::move(jo));
  if (!journal.ok()) return journal.status();
  m.journal = std::move(journal).value();
  m.journal_ready.store(m.journal.get(), std::memory_order_release);
  JournalStats stats = m.journal->Stats();
  m.metrics.journal_corrupt_records.Set(static_cast<double>(stats.corrupt_records));
  m.metrics.journal_truncated_bytes.Set(static_cast<double>(stats.truncated_bytes));
  std::fprintf(stderr,
               "dvrouter: journal %s/journal recovered: next seq %llu, %llu segments, %llu bytes, "
               "%llu corrupt records skipped, %llu torn bytes truncated\n",
               m.config.journal.data_dir.c_str(), static_cast<unsigned long long>(stats.next_seq),
               static_cast<unsigned long long>(stats.segments),
               static_cast<unsigned long long>(stats.bytes),
               static_cast<unsigned long long>(stats.corrupt_records),
               static_cast<unsigned long long>(stats.truncated_bytes));
  m.webhook.set_journal(m.journal.get());

  HttpServerLimits limits;
  limits.max_body_bytes = m.config.ingress.max_body_bytes;
  limits.header_timeout_ms = m.config.ingress.header_timeout_ms;
  limits.body_timeout_ms = m.config.ingress.body_timeout_ms;
  limits.max_connections = m.config.ingress.max_connections;
  limits.body_padding = Decoder::kPadding;
  m.ingress = std::make_unique<HttpServer>(&m.runtime, &m.webhook, limits);
  if (m.config.ingress.tls.enabled) {
    if (Status st = m.ingress->EnableTls(m.config.ingress.tls); !st.ok()) return st;
  }
  if (Status st = m.ingress->Listen(m.config.ingress.listen); !st.ok()) return st;
  m.ingress_ready.store(m.ingress.get(), std::memory_order_release);
  m.ingress_port = m.ingress->port();
  if (m.config.ingress.auth.mode == AuthMode::kNone) {
    std::fprintf(stderr,
                 "dvrouter: WARNING: ingress.auth.mode is none: webhooks unauthenticated\n");
  }
  if (!m.config.journal.fsync) {
    std::fprintf(stderr,
                 "dvrouter: WARNING: journal.durability is unsafe_no_fsync: acknowledged events "
                 "can be lost if the machine crashes\n");
  }
  m.admin.set_ready(true);
  std::fprintf(stderr, "dvrouter: ingress on %s%s:%u%s, admin on %s:%u\n",
               m.config.ingress.tls.enabled ? "https://" : "", m.config.ingress.listen.host.c_str(),
               m.ingress->port(), m.config.ingress.path.c_str(), m.config.admin.listen.host.c_str(),
               m.admin_server->port());
  return Status::Ok();
}

void App::Shutdown() {
  Impl& m = *impl_;
  m.admin.set_ready(false);
  m.ingress_ready.store(nullptr, std::memory_order_release);
  if (m.ingress) m.ingress->StopAccepting();
  // Completes every Append already queued: their callbacks post the responses.
  if (m.journal) m.journal->Stop();
  // Give the I/O threads a bounded moment to write those responses.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (m.ingress && m.ingress->in_flight() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (m.admin_server) m.admin_server->StopAccepting();
  m.runtime.Stop();  // no admin request runs from here on
  m.journal_ready.store(nullptr, std::memory_order_release);
  m.ingress.reset();
  m.admin_server.reset();
  m.journal.reset();
}

uint16_t App::ingress_port() const { return impl_->ingress_port.load(); }
uint16_t App::admin_port() const { return impl_->admin_port.load(); }

}  // namespace dvrouter
